"""The signer: each chain's signing path verifies, refusals, and that nothing else imports the vault."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bitcoinlib.transactions import Transaction as BtcTransaction
from coincurve import PublicKey
from django.utils import timezone
from eth_account import Account
from eth_account.hdaccount.mnemonic import Mnemonic
from tronpy import Tron
from tronpy.keys import PrivateKey as TronPrivateKey

from addresses import hd, services, signer
from addresses.models import AddressType, WalletAddress
from addresses.tests.conftest import TEST_MNEMONIC_DEPOSIT, TEST_MNEMONIC_HOT
from chains.base import SignedTx, UnsignedTx
from chains.codecs import hash160, segwit_decode

ROOT = Path(__file__).resolve().parents[2]
TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def _hot(chain_id: str, leak_watch) -> tuple:
    (row,) = services.hot_addresses_create(chain_id=chain_id, wallet_type="withdraw", count=1)
    key = hd.ExtendedKey.from_seed(Mnemonic.to_seed(TEST_MNEMONIC_HOT)).derive(row.derivation_path).private_key
    leak_watch.add(f"{chain_id} hot key", key)
    return row, key


def _eth_tx(**overrides: object) -> dict:
    tx = {
        "to": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "value": 10**15,
        "gas": 21000,
        "nonce": 3,
        "maxFeePerGas": 2 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "chainId": 1337,
        "type": 2,
    }
    tx.update(overrides)
    return tx


@pytest.mark.django_db
class TestEthSigning:
    def test_the_recovered_signer_is_the_hot_address(self, hot_seeds, leak_watch):
        row, _ = _hot("ETH", leak_watch)

        signed = signer.signer_for("ETH")(UnsignedTx(chain_id="ETH", from_address=row.address, payload=_eth_tx()))

        assert isinstance(signed, SignedTx)
        assert Account.recover_transaction(signed.raw) == row.address
        assert re.fullmatch(r"0x[0-9a-f]{64}", signed.tx_hash)

    def test_finds_the_address_in_lower_case(self, hot_seeds, leak_watch):
        row, _ = _hot("ETH", leak_watch)

        signed = signer.signer_for("ETH")(UnsignedTx("ETH", row.address.lower(), _eth_tx(**{"from": row.address})))

        assert Account.recover_transaction(signed.raw) == row.address

    def test_refuses_a_from_that_is_not_the_signing_address(self, hot_seeds, leak_watch):
        row, _ = _hot("ETH", leak_watch)

        with pytest.raises(signer.SignerError, match="from"):
            signer.signer_for("ETH")(UnsignedTx("ETH", row.address, _eth_tx(**{"from": TEST_EIP55})))

    def test_signs_with_an_imported_key(self, db, leak_watch):
        key = bytes([9]) * 32  # TEST-ONLY throwaway key
        leak_watch.add("imported key", key)
        row = signer.private_key_import(chain_id="ETH", private_key_hex="0x" + key.hex(), wallet_type="withdraw")

        signed = signer.signer_for("ETH")(UnsignedTx("ETH", row.address, _eth_tx()))

        assert row.address == Account.from_key(key).address
        assert Account.recover_transaction(signed.raw) == row.address

    def test_signs_for_a_deposit_address_too(self, deposit_seeds, leak_watch):
        (row,) = services.addresses_derive_next(chain_id="ETH", purpose=services.AddressType.USER_DEPOSIT, count=1)

        signed = signer.signer_for("ETH")(UnsignedTx("ETH", row.address, _eth_tx()))

        assert Account.recover_transaction(signed.raw) == row.address

    def test_signs_many_deposit_addresses_exactly_as_one_by_one_and_checks_each_key(
        self, deposit_seeds, hot_seeds, leak_watch
    ):
        rows = services.addresses_derive_next(chain_id="ETH", purpose=services.AddressType.USER_DEPOSIT, count=5)
        hot, _ = _hot("ETH", leak_watch)  # another vault entry in the same batch
        txs = [UnsignedTx("ETH", row.address, _eth_tx(nonce=i)) for i, row in enumerate([*rows, hot])]

        many = signer.sign_many(txs)

        one_by_one = [signer.signer_for("ETH")(tx) for tx in txs]
        assert many == one_by_one  # RFC 6979: the same key signs the same bytes the same way
        assert [Account.recover_transaction(s.raw) for s in many] == [r.address for r in [*rows, hot]]
        # A row whose path was changed must not sign for another address's key.
        WalletAddress.objects.filter(id=rows[1].id).update(derivation_path=rows[2].derivation_path)
        with pytest.raises(signer.SignerError, match="does not match its address"):
            signer.sign_many(txs[:2])
        with pytest.raises(signer.SignerError, match="not an address of this wallet"):
            signer.sign_many([UnsignedTx("ETH", TEST_EIP55, _eth_tx())])


TEST_EIP55 = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"


@pytest.mark.django_db
class TestTronSigning:
    def test_the_signature_recovers_to_the_owner(self, hot_seeds, leak_watch):
        row, key = _hot("TRON", leak_watch)
        txn = Tron().trx.transfer(row.address, TRON_USDT, 1_000_000).build(offline=True, ref_block_id="00" * 32)

        signed = signer.signer_for("TRON")(UnsignedTx("TRON", row.address, txn))

        assert signed.tx_hash == txn.txid
        (signature,) = txn.to_json()["signature"]
        recovered = PublicKey.from_signature_and_message(bytes.fromhex(signature), bytes.fromhex(txn.txid), hasher=None)
        assert hd.address_from_public_key("TRON", recovered.format()) == row.address
        assert TronPrivateKey(key).public_key.to_base58check_address() == row.address
        assert signature in signed.raw

    def test_refuses_a_transaction_of_another_owner(self, hot_seeds, leak_watch):
        row, _ = _hot("TRON", leak_watch)
        txn = Tron().trx.transfer(TRON_USDT, row.address, 1).build(offline=True, ref_block_id="00" * 32)

        with pytest.raises(signer.SignerError, match="owner"):
            signer.signer_for("TRON")(UnsignedTx("TRON", row.address, txn))

        assert txn.to_json()["signature"] == []

    def test_refuses_a_txid_that_is_not_the_hash_of_raw_data(self, hot_seeds, leak_watch):
        row, _ = _hot("TRON", leak_watch)
        txn = Tron().trx.transfer(row.address, TRON_USDT, 1).build(offline=True, ref_block_id="00" * 32)
        txn.txid = "ab" * 32

        with pytest.raises(signer.SignerError, match="txID"):
            signer.signer_for("TRON")(UnsignedTx("TRON", row.address, txn))


def _btc_tx(public_key: bytes, to_address: str) -> BtcTransaction:
    tx = BtcTransaction(network="regtest", witness_type="segwit")
    tx.add_input(prev_txid=bytes(range(32)), output_n=1, keys=public_key.hex(), value=100_000, witness_type="segwit")
    tx.add_output(90_000, address=to_address)
    return tx


@pytest.mark.django_db
class TestBtcSigning:
    def test_the_signed_transaction_verifies_for_the_address(self, hot_seeds, leak_watch):
        row, key = _hot("BTC", leak_watch)
        public = PublicKey.from_secret(key).format()
        (destination,) = services.hot_addresses_create(chain_id="BTC", wallet_type="other")
        tx = _btc_tx(public, destination.address)

        signed = signer.signer_for("BTC")(UnsignedTx("BTC", row.address, tx))

        assert tx.verify() is True
        reparsed = BtcTransaction.parse_hex(signed.raw, network="regtest")
        reparsed.inputs[0].value = 100_000
        assert reparsed.verify() is True
        assert reparsed.txid == signed.tx_hash
        witness_public = reparsed.inputs[0].witnesses[-1]
        assert hash160(witness_public) == segwit_decode(row.address)[2]
        assert all(not k.is_private for inp in tx.inputs for k in inp.keys)

    def test_signs_each_input_with_the_key_of_its_own_address(self, hot_seeds, leak_watch):
        # A payout spends outputs of a hot address and of a change address in one transaction.
        row, key = _hot("BTC", leak_watch)
        change = services.change_address_take(chain_id="BTC", wallet_type="withdraw", now=timezone.now())
        change_key = hd.ExtendedKey.from_seed(Mnemonic.to_seed(TEST_MNEMONIC_HOT)).derive(change.derivation_path)
        leak_watch.add("BTC change key", change_key.private_key)
        tx = _btc_tx(PublicKey.from_secret(key).format(), row.address)
        tx.add_input(prev_txid=bytes(range(1, 33)), output_n=0, keys=change_key.public_key.hex(), value=50_000,
                     witness_type="segwit")  # fmt: skip

        signed = signer.signer_for("BTC")(UnsignedTx("BTC", row.address, tx))

        reparsed = BtcTransaction.parse_hex(signed.raw, network="regtest")
        reparsed.inputs[0].value, reparsed.inputs[1].value = 100_000, 50_000
        assert reparsed.verify() is True
        owners = [hash160(inp.witnesses[-1]) for inp in reparsed.inputs]
        assert owners == [segwit_decode(row.address)[2], segwit_decode(change.address)[2]]

    def test_refuses_an_input_of_a_cold_address(self, hot_seeds, leak_watch):
        row, key = _hot("BTC", leak_watch)
        cold_public = PublicKey.from_secret(bytes([6]) * 32).format()  # TEST-ONLY throwaway key
        cold = services.cold_address_add(chain_id="BTC", address=hd.address_from_public_key("BTC", cold_public))
        tx = _btc_tx(PublicKey.from_secret(key).format(), row.address)
        tx.add_input(prev_txid=bytes(range(1, 33)), output_n=0, keys=cold_public.hex(), value=50_000,
                     witness_type="segwit")  # fmt: skip

        with pytest.raises(signer.SignerError, match="input"):
            signer.signer_for("BTC")(UnsignedTx("BTC", row.address, tx))
        assert cold.key_secret_id is None

    def test_a_payout_refuses_an_input_of_a_users_deposit_address(self, hot_seeds, deposit_seeds, leak_watch):
        # Deposit outputs are moved by a sweep only (credited or not yet): a payout never spends them.
        row, key = _hot("BTC", leak_watch)
        services.address_pool_fill(chain_id="BTC", count=1, pipelined=False)
        deposit = WalletAddress.objects.get(chain_id="BTC", address_type=AddressType.USER_DEPOSIT)
        deposit_public = (
            hd.ExtendedKey.from_seed(Mnemonic.to_seed(TEST_MNEMONIC_DEPOSIT)).derive(deposit.derivation_path).public_key
        )
        tx = _btc_tx(PublicKey.from_secret(key).format(), row.address)
        tx.add_input(prev_txid=bytes(range(1, 33)), output_n=0, keys=deposit_public.hex(), value=50_000,
                     witness_type="segwit")  # fmt: skip

        with pytest.raises(signer.SignerError, match="input"):
            signer.signer_for("BTC")(UnsignedTx("BTC", row.address, tx))

    def test_a_sweep_refuses_an_input_of_a_hot_address(self, hot_seeds, leak_watch):
        # A consolidation moves deposit outputs into the hot wallet, never the hot wallet's own.
        row, key = _hot("BTC", leak_watch)
        tx = _btc_tx(PublicKey.from_secret(key).format(), row.address)

        with pytest.raises(signer.SignerError, match="input"):
            signer.sign_btc_inputs(UnsignedTx("BTC", row.address, tx), input_addresses=[row.address])

    def test_refuses_an_input_of_another_key(self, hot_seeds, leak_watch):
        row, _ = _hot("BTC", leak_watch)
        stranger = PublicKey.from_secret(bytes([5]) * 32).format()  # TEST-ONLY throwaway key
        tx = _btc_tx(stranger, row.address)

        with pytest.raises(signer.SignerError, match="input"):
            signer.signer_for("BTC")(UnsignedTx("BTC", row.address, tx))


@pytest.mark.django_db
class TestRefusals:
    def test_refuses_a_cold_address(self, db):
        cold = services.cold_address_add(chain_id="ETH", address=TEST_EIP55)

        with pytest.raises(signer.SignerError, match="watch-only"):
            signer.signer_for("ETH")(UnsignedTx("ETH", cold.address, _eth_tx()))

    def test_refuses_an_address_that_is_not_ours(self, hot_seeds):
        with pytest.raises(signer.SignerError, match="not an address of this wallet"):
            signer.signer_for("ETH")(UnsignedTx("ETH", TEST_EIP55, _eth_tx()))

    def test_refuses_a_transaction_of_another_chain(self, hot_seeds, leak_watch):
        row, _ = _hot("ETH", leak_watch)

        with pytest.raises(signer.SignerError, match="cannot sign"):
            signer.signer_for("TRON")(UnsignedTx("ETH", row.address, _eth_tx()))

    def test_refuses_a_row_whose_path_was_changed(self, hot_seeds, leak_watch):
        row, _ = _hot("ETH", leak_watch)
        type(row).objects.filter(id=row.id).update(derivation_path="m/44'/60'/0'/0/99")

        with pytest.raises(signer.SignerError, match="does not match"):
            signer.signer_for("ETH")(UnsignedTx("ETH", row.address, _eth_tx()))

    def test_refuses_an_unknown_chain(self):
        with pytest.raises(signer.SignerError):
            signer.signer_for("DOGE")


def test_only_the_signer_imports_the_vault():
    importers = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(("node_modules/", "var/", ".venv/")) or "/tests/" in f"/{relative}":
            continue
        text = path.read_text(errors="replace")
        if re.search(r"addresses\.vault|from addresses import [^\n]*\bvault\b|from \. import [^\n]*\bvault\b", text):
            importers.append(relative)

    assert importers == ["addresses/signer.py"]
