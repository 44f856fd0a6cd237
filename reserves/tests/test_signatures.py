"""
Address signatures over a snapshot's statement: made by the signer with each chain's keys,
checked by the standalone verifier and by each chain's own library; cold signatures from ops
checked on import.
"""

from __future__ import annotations

import base64
import hashlib

import coincurve
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from tronpy.keys import PublicKey as TronPublicKey
from tronpy.keys import Signature as TronSignature

from addresses import services as addresses_services
from addresses import signer
from chains.codecs import hash160, segwit_encode
from chains.testing import evm_adapter, evm_node, tron_adapter, tron_node  # noqa: F401
from coins.models import CoinConfig
from recharges.models import ScanCursor
from reserves import services as reserves_services
from reserves.models import ReserveAddress, ReserveTree, SignedBy
from reserves.tests.conftest import balance_set, verify_run
from tools import verify_reserves
from utxos.models import BtcUtxo

pytestmark = pytest.mark.django_db

STATEMENT = "wallet reserves snapshot 9 " + "ab" * 32 + " 2030-01-02T03:04:05Z"


def _hot(chain_id: str):
    (row,) = addresses_services.hot_addresses_create(chain_id=chain_id, wallet_type="withdraw", count=1)
    return row


def _bip137_sign(key: coincurve.PrivateKey, message: str) -> str:
    """An offline BIP-137 signer, as a cold wallet would sign (written here apart from the signer's)."""
    body = message.encode()
    assert len(body) < 253
    digest = hashlib.sha256(
        hashlib.sha256(b"\x18Bitcoin Signed Message:\n" + bytes([len(body)]) + body).digest()
    ).digest()
    signature = key.sign_recoverable(digest, hasher=None)
    return base64.b64encode(bytes([39 + signature[64]]) + signature[:64]).decode()


def _bip137_signer_of(address_hrp: str, message: str, signature: str) -> str:
    raw = base64.b64decode(signature)
    digest = hashlib.sha256(
        hashlib.sha256(b"\x18Bitcoin Signed Message:\n" + bytes([len(message)]) + message.encode()).digest()
    ).digest()
    public = coincurve.PublicKey.from_signature_and_message(raw[1:] + bytes([(raw[0] - 27) & 3]), digest, hasher=None)
    return segwit_encode(address_hrp, 0, hash160(public.format(compressed=True)))


class TestMessageSign:
    def test_a_btc_signature_recovers_the_hot_address(self, hot_seeds):
        row = _hot("BTC")

        signature = signer.message_sign(chain_id="BTC", address=row.address, message=STATEMENT)

        assert _bip137_signer_of("bcrt", STATEMENT, signature) == row.address
        assert verify_reserves.btc_verify(address=row.address, message=STATEMENT, signature=signature) is True

    def test_an_eth_signature_recovers_the_hot_address(self, hot_seeds):
        row = _hot("ETH")

        signature = signer.message_sign(chain_id="ETH", address=row.address, message=STATEMENT)

        assert Account.recover_message(encode_defunct(text=STATEMENT), signature=signature) == row.address
        assert verify_reserves.eth_verify(address=row.address, message=STATEMENT, signature=signature) is True

    def test_a_tron_signature_recovers_the_hot_address(self, hot_seeds):
        row = _hot("TRON")

        signature = signer.message_sign(chain_id="TRON", address=row.address, message=STATEMENT)

        raw = bytes.fromhex(signature.removeprefix("0x"))
        recovered = TronPublicKey.recover_from_msg(STATEMENT.encode(), TronSignature(raw))
        assert recovered.to_base58check_address() == row.address
        assert verify_reserves.tron_verify(address=row.address, message=STATEMENT, signature=signature) is True

    @pytest.mark.parametrize("chain_id", ["BTC", "ETH", "TRON"])
    def test_a_signature_fails_for_another_statement_or_another_address(self, hot_seeds, chain_id):
        row, other = addresses_services.hot_addresses_create(chain_id=chain_id, wallet_type="withdraw", count=2)
        signature = signer.message_sign(chain_id=chain_id, address=row.address, message=STATEMENT)

        changed = STATEMENT.replace("snapshot 9", "snapshot 8")

        check = verify_reserves.VERIFIERS[chain_id]
        assert check(address=row.address, message=STATEMENT, signature=signature) is True
        assert check(address=row.address, message=changed, signature=signature) is False
        assert check(address=other.address, message=STATEMENT, signature=signature) is False

    def test_a_deposit_address_signs_with_the_deposit_seed(self, deposit_seeds, user):
        row = addresses_services.deposit_address_assign(user=user, coin_id="ETH")

        signature = signer.message_sign(chain_id="ETH", address=row.address, message=STATEMENT)

        assert Account.recover_message(encode_defunct(text=STATEMENT), signature=signature) == row.address

    def test_a_cold_address_cannot_sign_here(self, seeded_coins):
        key = coincurve.PrivateKey()
        address = segwit_encode("bcrt", 0, hash160(key.public_key.format(compressed=True)))
        addresses_services.cold_address_add(chain_id="BTC", address=address)

        with pytest.raises(signer.SignerError, match="watch-only"):
            signer.message_sign(chain_id="BTC", address=address, message=STATEMENT)


def _utxo(row, sats: int, n: int) -> None:
    BtcUtxo.objects.create(
        txid=f"{n:064x}",
        vout=0,
        value_sats=sats,
        script_hex="0014" + "00" * 20,
        address=row,
        kind=row.address_type,
        wallet_type=row.wallet_type,
        block_height=100,
        block_hash="00" * 32,
    )


@pytest.fixture
def btc_cold_snapshot(hot_seeds, user, leak_watch):
    """A BTC snapshot: a hot address holding 0.6 BTC and a cold one holding 1 BTC (in the UTXO set at
    height 120), alice owed 1.2 BTC. The cold key is a TEST-ONLY key held by the test, as ops hold it offline."""
    hot = _hot("BTC")
    cold_key = coincurve.PrivateKey()
    leak_watch.add("cold key", cold_key.secret)
    cold = addresses_services.cold_address_add(
        chain_id="BTC", address=segwit_encode("bcrt", 0, hash160(cold_key.public_key.format(compressed=True)))
    )
    _utxo(hot, 60_000_000, 1)
    _utxo(cold, 100_000_000, 2)
    ScanCursor.objects.create(chain_id="BTC", height=120)
    balance_set(user.id, "BTC", available="1.2")
    snapshot = reserves_services.snapshot_build(now=timezone.now(), coin_ids=["BTC"])
    return snapshot, hot, cold, cold_key


class TestBtcSnapshot:
    def test_the_hot_address_signs_at_the_scanned_height_and_the_cold_awaits_ops(self, btc_cold_snapshot):
        snapshot, hot, cold, _ = btc_cold_snapshot

        rows = {row.address: row for row in snapshot.addresses.all()}

        assert rows[hot.address].signed_by == SignedBy.KEY
        assert rows[hot.address].height == 120
        assert verify_reserves.btc_verify(
            address=hot.address, message=snapshot.statement, signature=rows[hot.address].signature
        )
        assert rows[cold.address].watch_only is True
        assert rows[cold.address].signature == ""
        assert snapshot.published_at is not None  # the keys here all signed

    def test_a_bad_cold_signature_is_refused_on_import_with_one_line(self, btc_cold_snapshot):
        snapshot, _, cold, cold_key = btc_cold_snapshot
        other_statement = snapshot.statement.replace(snapshot.snapshot_root, "00" * 32)

        with pytest.raises(CommandError) as refused:
            call_command(
                "reserves_import_signature",
                "--snapshot",
                str(snapshot.id),
                "--address",
                cold.address,
                "--signature",
                _bip137_sign(cold_key, other_statement),
            )

        assert "does not verify" in str(refused.value)
        assert "\n" not in str(refused.value)
        assert ReserveAddress.objects.get(snapshot=snapshot, address=cold.address).signature == ""

    def test_a_signature_by_another_key_is_refused(self, btc_cold_snapshot):
        snapshot, _, cold, _ = btc_cold_snapshot

        with pytest.raises(reserves_services.SignatureRefused):
            reserves_services.signature_import(
                snapshot_id=snapshot.id,
                address=cold.address,
                signature=_bip137_sign(coincurve.PrivateKey(), snapshot.statement),
                operator=None,
                now=timezone.now(),
            )

    def test_a_good_cold_signature_is_stored_and_the_proof_then_covers_the_users(
        self, btc_cold_snapshot, proof_of, user, tmp_path
    ):
        snapshot, _, cold, cold_key = btc_cold_snapshot
        tree = ReserveTree.objects.get(snapshot=snapshot, coin_id="BTC")
        published = ["--root", tree.root, "--total", str(int(tree.total_base_units))]
        before = verify_run(proof_of("BTC"), tmp_path, *published)

        call_command(
            "reserves_import_signature",
            "--snapshot",
            str(snapshot.id),
            "--address",
            cold.address,
            "--signature",
            _bip137_sign(cold_key, snapshot.statement),
        )
        after = verify_run(proof_of("BTC"), tmp_path, *published)

        # Before: the hot address's 0.6 BTC alone does not cover alice's 1.2.
        assert before.returncode == 1
        assert "LESS than the users' total 120000000" in before.stdout
        assert ReserveAddress.objects.get(snapshot=snapshot, address=cold.address).signed_by == SignedBy.OPS
        assert after.returncode == 0, after.stdout
        assert "signed addresses hold 160000000, covering the users' total 120000000" in after.stdout


@pytest.fixture
def account_chains(evm_node, tron_node, hot_seeds):  # noqa: F811
    """ETH and TRON hot addresses funded on the dev nodes: 2 ETH and 500 USDT-ERC20; 300 TRX."""
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=evm_node.contracts["USDT"])
    CoinConfig.objects.filter(coin_id="USDT-TRC20").update(contract_address=tron_node.contracts["USDT"])
    eth, trx = _hot("ETH"), _hot("TRON")
    # Each test derives the same first hot address again: the ganache state goes back after it.
    before = evm_node.snapshot()
    evm_node.send_tx({"to": eth.address, "value": 2 * 10**18, "gas": 21000})
    usdt = evm_node.contract(evm_node.contracts["USDT"])
    evm_node.transact(usdt.functions.transfer(eth.address, 500 * 10**6))
    tron_node.fund(trx.address, 300 * 10**6)
    yield eth, trx
    evm_node.revert(before)


class TestAccountChainSnapshot:
    def test_eth_and_tron_hot_addresses_sign_and_a_users_proofs_verify(
        self,
        account_chains,
        evm_adapter,  # noqa: F811
        tron_adapter,  # noqa: F811
        evm_node,  # noqa: F811
        user,
        proof_of,
        tmp_path,
    ):
        eth, trx = account_chains
        balance_set(user.id, "ETH", available="1.25")
        balance_set(user.id, "USDT-ERC20", available="400")
        balance_set(user.id, "TRX", frozen="250")
        tip = evm_adapter.tip_height()

        snapshot = reserves_services.snapshot_build(
            now=timezone.now(),
            coin_ids=["ETH", "USDT-ERC20", "TRX"],
            adapters={"ETH": evm_adapter, "TRON": tron_adapter},
        )

        rows = {row.address: row for row in snapshot.addresses.all()}
        assert rows[eth.address].height == tip
        assert rows[eth.address].block_hash == evm_adapter.block_hash(tip)
        assert {h.coin_id: int(h.balance_base_units) for h in rows[eth.address].holdings.all()} == {
            "ETH": 2 * 10**18,
            "USDT-ERC20": 500 * 10**6,
        }
        assert (
            Account.recover_message(encode_defunct(text=snapshot.statement), signature=rows[eth.address].signature)
            == eth.address
        )
        assert rows[trx.address].signed_by == SignedBy.KEY
        for coin_id in ("ETH", "USDT-ERC20", "TRX"):
            tree = ReserveTree.objects.get(snapshot=snapshot, coin_id=coin_id)
            done = verify_run(
                proof_of(coin_id),
                tmp_path,
                "--root",
                tree.root,
                "--total",
                str(int(tree.total_base_units)),
                "--user-id",
                str(user.id),
            )
            assert done.returncode == 0, done.stdout
            assert "signature verifies" in done.stdout

    def test_the_eth_balances_are_those_of_the_stated_block(self, account_chains, evm_adapter, evm_node, user):  # noqa: F811
        # A later block moves ether; reading at the stated height still answers the old balance.
        eth, _ = account_chains
        height = evm_adapter.tip_height()
        eth_coin = CoinConfig.objects.get(coin_id="ETH")
        rows = reserves_services.address_rows("ETH")

        evm_node.send_tx({"to": eth.address, "value": 10**18, "gas": 21000})
        at_height = evm_adapter.balance(eth.address, None, height=height)
        reserves_services.chain_read(adapter=evm_adapter, coins=[eth_coin], rows=rows)

        row = next(r for r in rows if r.address == eth.address)
        assert at_height == 2 * 10**18
        assert row.height == height + 1
        assert row.balances == {"ETH": 3 * 10**18}
