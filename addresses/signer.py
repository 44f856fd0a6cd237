"""
The signer: the only module that decrypts keys (and the only importer of addresses.vault).

Its public surface is narrow:
- `signer_for(chain_id)` returns a `chains.base.Signer`: sign this unsigned transaction for the
  address it names. The address must be one of ours with a key (hot or deposit); its key is
  decrypted, derived, checked against the stored address, used, and dropped.
- `hd_wallet_create`, `private_key_import`: put a new secret into the vault.
- `message_sign(chain_id, address, message)`: the address's signature of a text statement (proof
  of reserves), in its chain's signed-message scheme.
- `secrets_rotate`, `secrets_verify`: re-encrypt under another KEK version; prove every secret decrypts.
- `keyring_check`: refuse to start with a missing or malformed KEK.
- `signing_session()`: a block within which each address's key is derived once, not per transaction.

Nothing here returns, logs or raises with a secret in it; frames that hold one are marked
`sensitive_variables`, so Django's error reports do not show their locals either.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from addresses import hd, vault
from addresses.models import AddressType, KeySecret, SecretKind, WalletAddress
from chains.base import SignedTx, Signer, UnsignedTx
from coins import selectors as coins_selectors
from wallet_project.errors import WalletError

logger = logging.getLogger(__name__)

MNEMONIC_WORDS = 24


class SignerError(WalletError):
    """The signer refuses: unknown or keyless address, wrong chain, or a payload it cannot sign."""

    code = "signer_error"


class VaultEntryExists(WalletError):
    code = "vault_entry_exists"


class InvalidSecret(WalletError):
    code = "invalid_secret"


def keyring_check() -> None:
    """Load the KEKs once, so that a missing or malformed KEK stops the process at start.

    :raises ImproperlyConfigured: see vault.keyring_load.
    """
    keyring = vault.keyring_load()
    logger.info("key vault ready: %r", keyring)


def _associated_data(secret: KeySecret, version: int) -> bytes:
    # Binds a ciphertext to its row and what the row says it is: moving it to another row, or
    # relabelling its kind, chain, purpose or fingerprint, makes decryption fail.
    return "|".join(
        [
            "wallet_key_vault",
            str(secret.key_id),
            str(secret.kind),
            secret.chain_id,
            str(secret.purpose),
            secret.fingerprint,
            f"v{version}",
        ]
    ).encode()


@sensitive_variables()
def _secret_seal(secret: KeySecret, plaintext: bytes, keyring: vault.Keyring, version: int) -> None:
    secret.key_version = version
    secret.ciphertext = vault.seal(
        keyring=keyring, version=version, plaintext=plaintext, associated_data=_associated_data(secret, version)
    )


@sensitive_variables()
def _secret_open(secret: KeySecret, keyring: vault.Keyring) -> bytes:
    try:
        return vault.unseal(
            keyring=keyring,
            version=secret.key_version,
            sealed=bytes(secret.ciphertext),
            associated_data=_associated_data(secret, secret.key_version),
        )
    except vault.VaultError as exc:
        raise vault.VaultError(f"vault entry {secret.id}: {exc}") from None


# --- putting secrets in --------------------------------------------------------------


@sensitive_variables()
def _mnemonic_to_seed(mnemonic: str, passphrase: str) -> bytes:
    from eth_account.hdaccount.mnemonic import Mnemonic

    words = " ".join(mnemonic.split())
    if not Mnemonic().is_mnemonic_valid(words):
        raise InvalidSecret("The mnemonic is not a valid English BIP39 mnemonic.", field="mnemonic")
    return Mnemonic.to_seed(words, passphrase)


@sensitive_variables()
def mnemonic_generate() -> str:
    """Return a new 24-word English BIP39 mnemonic (for hd_wallet_create; never print it)."""
    from eth_account.hdaccount.mnemonic import Mnemonic

    return Mnemonic().generate(MNEMONIC_WORDS)


@sensitive_variables()
@transaction.atomic(durable=True)
def hd_wallet_create(
    *, chain_id: str, purpose: AddressType, mnemonic: str, passphrase: str = "", label: str = ""
) -> KeySecret:
    """
    Store the BIP39 seed of mnemonic (+ passphrase) encrypted as the chain's HD seed for purpose.

    Keeps the account xpub beside it, so that addresses are derived without decrypting.
    :raises VaultEntryExists: the chain already has a seed for this purpose.
    :raises InvalidSecret: the mnemonic is not valid BIP39.
    """
    if purpose not in (AddressType.HOT, AddressType.USER_DEPOSIT):
        raise InvalidSecret("An HD seed serves hot wallets or user deposit addresses.", field="purpose")
    if KeySecret.objects.filter(chain_id=chain_id, purpose=purpose, seed_slot=1).exists():
        raise VaultEntryExists(f"{chain_id} already has an HD seed for {AddressType(purpose).label}.")
    seed = _mnemonic_to_seed(mnemonic, passphrase)
    root = hd.ExtendedKey.from_seed(seed)
    account_path = hd.account_path(chain_id)
    keyring = vault.keyring_load()
    secret = KeySecret(
        key_id=uuid.uuid4(),
        kind=SecretKind.HD_SEED,
        chain_id=chain_id,
        purpose=purpose,
        seed_slot=1,
        label=label,
        fingerprint=root.fingerprint.hex(),
        account_path=account_path,
        account_xpub=root.derive(account_path).neuter().xpub(),
    )
    _secret_seal(secret, seed, keyring, keyring.current_version)
    secret.save()
    logger.info(
        "HD seed stored: vault entry %s, chain %s, fingerprint %s, KEK v%s",
        secret.id,
        chain_id,
        secret.fingerprint,
        secret.key_version,
    )
    return secret


@sensitive_variables()
@transaction.atomic(durable=True)
def private_key_import(
    *, chain_id: str, private_key_hex: str, wallet_type: str = "default", label: str = ""
) -> WalletAddress:
    """
    Store an imported private key encrypted, and its address as a hot wallet of wallet_type.

    :raises InvalidSecret: not 32 bytes of hex, or not a valid secp256k1 key.
    :raises VaultEntryExists: the address is already ours.
    """
    text = private_key_hex.strip().removeprefix("0x")
    try:
        key = bytes.fromhex(text)
        if len(key) != 32:
            raise ValueError
        node = hd.ExtendedKey.from_private_key(key)
    except ValueError:
        raise InvalidSecret("A private key is 32 bytes of hex on the secp256k1 curve.", field="private_key") from None
    address = hd.address_from_public_key(chain_id, node.public_key)
    if WalletAddress.objects.filter(address=address).exists():
        raise VaultEntryExists("This address is already in the wallet.")
    keyring = vault.keyring_load()
    secret = KeySecret(
        key_id=uuid.uuid4(),
        kind=SecretKind.PRIVATE_KEY,
        chain_id=chain_id,
        purpose=AddressType.HOT,
        label=label,
        fingerprint=address,
    )
    _secret_seal(secret, key, keyring, keyring.current_version)
    secret.save()
    coin = coins_selectors.chain_native_coin(chain_id=chain_id)
    row = WalletAddress.objects.create(
        coin=coin,
        coin_name=coin.coin_name,
        chain_id=chain_id,
        address_type=AddressType.HOT,
        address=address,
        public_key=node.public_key.hex(),
        wallet_type=wallet_type,
        key_secret=secret,
    )
    logger.info("private key imported: vault entry %s, hot address %s", secret.id, address)
    return row


# --- rotation and verification -------------------------------------------------------


@dataclass
class VerifyReport:
    checked: int = 0
    by_version: dict[int, int] = field(default_factory=dict)
    failed_ids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed_ids


@sensitive_variables()
@transaction.atomic(durable=True)
def _secret_rotate_one(*, secret_id: int, keyring: vault.Keyring, to_version: int) -> bool:
    secret = KeySecret.objects.select_for_update().get(id=secret_id)
    if secret.key_version == to_version:
        return False  # done by an earlier, interrupted run or a concurrent one
    plaintext = _secret_open(secret, keyring)
    _secret_seal(secret, plaintext, keyring, to_version)
    secret.rotate_time = timezone.now()
    secret.save(update_fields=["key_version", "ciphertext", "rotate_time"])
    return True


def secrets_rotate(*, to_version: int, progress: Callable[[int], None] | None = None) -> int:
    """
    Re-encrypt every vault entry not yet under KEK `to_version`; return how many were re-encrypted.

    One short transaction per entry, each locking its row: an interruption leaves every entry
    decryptable (either version), and running again finishes the job.
    :raises ImproperlyConfigured: to_version's KEK (or the old ones) are not loaded.
    """
    keyring = vault.keyring_load()
    if to_version not in keyring.keys:
        raise ImproperlyConfigured(f"KEK version {to_version} is not loaded")
    pending = list(KeySecret.objects.exclude(key_version=to_version).order_by("id").values_list("id", flat=True))
    rotated = 0
    for secret_id in pending:
        rotated += _secret_rotate_one(secret_id=secret_id, keyring=keyring, to_version=to_version)
        if progress is not None:
            progress(1)
    logger.info("key rotation to KEK v%s: %s entries re-encrypted", to_version, rotated)
    return rotated


@sensitive_variables()
def _secret_check(secret: KeySecret, keyring: vault.Keyring) -> bool:
    try:
        plaintext = _secret_open(secret, keyring)
    except vault.VaultError:
        return False
    if secret.kind == SecretKind.HD_SEED:
        root = hd.ExtendedKey.from_seed(plaintext)
        return (
            root.fingerprint.hex() == secret.fingerprint
            and root.derive(secret.account_path).neuter().xpub() == secret.account_xpub
        )
    node = hd.ExtendedKey.from_private_key(plaintext)
    return hd.address_from_public_key(secret.chain_id, node.public_key) == secret.fingerprint


def secrets_verify() -> VerifyReport:
    """Decrypt every vault entry and check it against its public fingerprint; report failures by id."""
    keyring = vault.keyring_load()
    report = VerifyReport()
    for secret in KeySecret.objects.order_by("id").iterator(chunk_size=200):
        report.checked += 1
        report.by_version[secret.key_version] = report.by_version.get(secret.key_version, 0) + 1
        if not _secret_check(secret, keyring):
            report.failed_ids.append(secret.id)
    if report.failed_ids:
        logger.error("key vault verification: entries %s do not decrypt or do not match", report.failed_ids)
    return report


# --- signing -------------------------------------------------------------------------


def _signing_address(chain_id: str, from_address: str) -> WalletAddress:
    candidates = WalletAddress.objects.filter(chain_id=chain_id, address__iexact=from_address).select_related(
        "key_secret"
    )
    # The column's collation may ignore case; base58 (TRON) does not, so compare exactly.
    wanted = from_address.lower() if chain_id in ("ETH", "BTC") else from_address
    for row in candidates:
        if (row.address.lower() if chain_id in ("ETH", "BTC") else row.address) == wanted:
            if row.address_type == AddressType.COLD or row.key_secret is None:
                raise SignerError(f"{row.address} is watch-only: the wallet holds no key for it.")
            return row
    raise SignerError(f"{from_address} is not an address of this wallet on {chain_id}.")


@sensitive_variables()
def _private_key(row: WalletAddress) -> bytes:
    secret = row.key_secret
    keyring = vault.keyring_load()
    plaintext = _secret_open(secret, keyring)
    if secret.kind == SecretKind.HD_SEED:
        node = hd.ExtendedKey.from_seed(plaintext).derive(row.derivation_path or "")
    else:
        node = hd.ExtendedKey.from_private_key(plaintext)
    # A row whose path or vault entry was tampered with must not sign for someone else's key.
    if hd.address_from_public_key(row.chain_id, node.public_key) != row.address:
        raise SignerError(f"The key of {row.address} does not match its address.")
    return node.private_key


@sensitive_variables()
def _sign_eth(payload: object, key: bytes, address: str) -> SignedTx:
    from eth_account import Account

    if not isinstance(payload, dict):
        raise SignerError("An ETH payload is a transaction dict.")
    tx = dict(payload)
    sender = tx.pop("from", None)
    if sender is not None and str(sender).lower() != address.lower():
        raise SignerError("The transaction's from does not match the signing address.")
    signed = Account.sign_transaction(tx, key)
    return SignedTx(tx_hash="0x" + bytes(signed.hash).hex(), raw="0x" + bytes(signed.raw_transaction).hex())


@sensitive_variables()
def _sign_tron(payload: object, key: bytes, address: str) -> SignedTx:
    from tronpy import keys as tron_keys
    from tronpy.tron import Transaction

    if not isinstance(payload, Transaction):
        raise SignerError("A TRON payload is a tronpy Transaction.")
    raw_data = payload._raw_data
    try:
        owner = raw_data["contract"][0]["parameter"]["value"]["owner_address"]
    except (KeyError, IndexError, TypeError):
        raise SignerError("The TRON transaction has no owner address.") from None
    if tron_keys.to_base58check_address(owner) != address:
        raise SignerError("The transaction's owner does not match the signing address.")
    # Sign the hash of raw_data as we compute it, not a txID someone else computed.
    from tronpy.proto import calculate_txid_from_raw_data

    if calculate_txid_from_raw_data(raw_data) != payload.txid:
        raise SignerError("The TRON transaction's txID does not match its raw_data.")
    payload.sign(tron_keys.PrivateKey(key))
    return SignedTx(tx_hash=payload.txid, raw=json.dumps(payload.to_json(), separators=(",", ":")))


# The kinds of address whose outputs a BTC transaction may spend: a payout or a transfer to cold
# (signer_for) the hot pool's (hot, change); a sweep (sign_btc_inputs) deposit addresses' only.
# A payout that spent a deposit output would pay with a user's (maybe not yet credited) deposit;
# a sweep that spent a hot output would move money the payouts and treasury count on.
_BTC_SPENDING_TYPES = (AddressType.HOT, AddressType.CHANGE)
_BTC_SWEEP_TYPES = (AddressType.USER_DEPOSIT,)


def _bitcoinlib_network() -> str:
    return {"mainnet": "bitcoin", "testnet": "testnet", "regtest": "regtest"}[hd.btc_network()]


@sensitive_variables()
def _sign_btc(payload: object, key: bytes, address: str) -> SignedTx:
    """Sign a transaction whose every input spends from `address` (one key)."""
    return _sign_btc_keys(payload, {_btc_public(key): key})


def _btc_public(key: bytes) -> bytes:
    from bitcoinlib.keys import Key

    return Key(key, network=_bitcoinlib_network(), compressed=True).public_byte


@sensitive_variables()
def _btc_input_keys(payload: object, from_key: bytes) -> dict[bytes, bytes]:
    """
    The private key of every input's public key: each must be the key of an address of this wallet
    that can sign (hot or change; never deposit or cold). A payout spends the outputs of several hot
    and change addresses of its pool in one transaction.
    """
    from bitcoinlib.transactions import Transaction

    if not isinstance(payload, Transaction):
        raise SignerError("A BTC payload is a bitcoinlib Transaction.")
    keys = {_btc_public(from_key): from_key}
    for inp in payload.inputs:
        publics = [k.public_byte for k in inp.keys]
        if len(publics) != 1:
            raise SignerError("Every input must spend from one address of this wallet, with its public key given.")
        if publics[0] in keys:
            continue
        owner = hd.address_from_public_key("BTC", publics[0])
        try:
            row = _signing_address("BTC", owner)
        except SignerError:
            raise SignerError("An input spends from a key this wallet does not hold.") from None
        if row.address_type not in _BTC_SPENDING_TYPES:
            raise SignerError("An input spends from an address of a kind the signer does not spend.")
        keys[publics[0]] = _private_key(row)
    return keys


@sensitive_variables()
def _sign_btc_keys(payload: object, keys: dict[bytes, bytes]) -> SignedTx:
    from bitcoinlib.keys import Key
    from bitcoinlib.transactions import Transaction

    if not isinstance(payload, Transaction):
        raise SignerError("A BTC payload is a bitcoinlib Transaction.")
    if not payload.inputs:
        raise SignerError("The BTC transaction has no inputs.")
    for index, inp in enumerate(payload.inputs):
        publics = [k.public_byte for k in inp.keys]
        if len(publics) != 1 or publics[0] not in keys:
            raise SignerError("Every input must spend from the signing address, with its public key given.")
        payload.sign(keys=[Key(keys[publics[0]], network=_bitcoinlib_network(), compressed=True)], index_n=index)
    # What sign_and_update does after signing, without signing again: refresh id, size and totals.
    payload.txid = payload.signature_hash()[::-1].hex()
    payload.size = len(payload.raw())
    payload.calc_weight_units()
    payload.update_totals()
    if not payload.verify():
        raise SignerError("The signed BTC transaction does not verify.")
    return SignedTx(tx_hash=payload.txid, raw=payload.raw_hex())


# The open signing session of this thread: {(chain, address as looked up): (its row, its key)}.
_session = threading.local()


@contextmanager
def signing_session() -> Iterator[None]:
    """
    Within the block, each address's key is decrypted, derived and checked against its stored address
    once, at its first transaction, and kept in this process's memory (never in a log, the database or
    a message) for its next ones; all are dropped when the block ends. For a run signing many
    transactions from one hot address (withdrawals_pay): the vault and the derivation cost far more
    than the signature. Per thread; a session inside another joins it.
    """
    if getattr(_session, "keys", None) is not None:
        yield
        return
    _session.keys = {}
    try:
        yield
    finally:
        _session.keys.clear()
        _session.keys = None


@sensitive_variables()
def _row_and_key(chain_id: str, from_address: str) -> tuple[WalletAddress, bytes]:
    """The signing address's row and its checked key: from the open session, else read and derived."""
    keys = getattr(_session, "keys", None)
    if keys is not None and (chain_id, from_address) in keys:
        return keys[(chain_id, from_address)]
    row = _signing_address(chain_id, from_address)
    found = (row, _private_key(row))
    if keys is not None:
        keys[(chain_id, from_address)] = found
    return found


_SIGNERS: dict[str, Callable[[object, bytes, str], SignedTx]] = {
    "BTC": _sign_btc,
    "ETH": _sign_eth,
    "TRON": _sign_tron,
}


def signer_for(chain_id: str) -> Signer:
    """
    Return the chain's signer: a callable that signs an UnsignedTx for its from_address.

    The callable raises SignerError for an address that is not ours, is watch-only, is on another
    chain, or a payload of the wrong type or owner. It reads the database (no lock held).
    """
    if chain_id not in _SIGNERS:
        raise SignerError(f"No signer for chain {chain_id!r}.")

    @sensitive_variables()
    def sign(unsigned: UnsignedTx) -> SignedTx:
        if unsigned.chain_id != chain_id:
            raise SignerError(f"A {chain_id} signer cannot sign a {unsigned.chain_id} transaction.")
        if chain_id == "BTC":
            row = _signing_address(chain_id, unsigned.from_address)
            if row.address_type not in _BTC_SPENDING_TYPES:
                raise SignerError("An input spends from an address of a kind the signer does not spend.")
            # A BTC transaction may spend outputs of several of our addresses: each input is
            # signed with its own address's key (looked up by the input's public key).
            key = _private_key(row)
            signed = _sign_btc_keys(unsigned.payload, _btc_input_keys(unsigned.payload, key))
        else:
            row, key = _row_and_key(chain_id, unsigned.from_address)
            signed = _SIGNERS[chain_id](unsigned.payload, key, row.address)
        logger.info("signed %s transaction %s from %s", chain_id, signed.tx_hash, row.address)
        return signed

    return sign


@sensitive_variables()
def sign_many(unsigned: Sequence[UnsignedTx]) -> list[SignedTx]:
    """
    Sign many account-chain transactions (ETH, TRON) of one chain, each for its from_address, as
    signer_for would one by one; results in the order given.

    For a run of sweeps from many deposit addresses of one seed: their rows are read in one query,
    each vault entry is decrypted once for the call and each account's parent key derived once
    (deriving m/44'/60'/0'/0 from the seed for every address cost most of a signature). The
    decrypted seed and the keys derived from it live in this call's frames only, as they do in
    signer_for's; every key is still checked against its stored address before it signs.
    :raises SignerError: as signer_for: an address not ours, watch-only, of another chain, a key
        that does not match its address, or a payload of the wrong type or owner.
    """
    if not unsigned:
        return []
    chain_id = unsigned[0].chain_id
    if chain_id not in _SIGNERS or chain_id == "BTC":
        raise SignerError(f"No batch signer for chain {chain_id!r}.")
    if any(u.chain_id != chain_id for u in unsigned):
        raise SignerError(f"A batch of {chain_id} transactions holds another chain's transaction.")
    fold = str.lower if chain_id == "ETH" else str
    wanted = {u.from_address for u in unsigned}
    rows = {
        fold(row.address): row
        for row in WalletAddress.objects.filter(chain_id=chain_id, address__in=wanted).select_related("key_secret")
    }
    keyring = vault.keyring_load()
    seeds: dict[int, bytes] = {}
    parents: dict[tuple[int, str], hd.ExtendedKey] = {}  # (vault entry, parent path): its key
    signed = []
    for tx in unsigned:
        row = rows.get(fold(tx.from_address)) or _signing_address(chain_id, tx.from_address)
        if row.address_type == AddressType.COLD or row.key_secret is None:
            raise SignerError(f"{row.address} is watch-only: the wallet holds no key for it.")
        key = _private_key_cached(row, keyring=keyring, seeds=seeds, parents=parents)
        signed.append(_SIGNERS[chain_id](tx.payload, key, row.address))
    logger.info("signed %s %s transactions", len(signed), chain_id)
    return signed


@sensitive_variables()
def _private_key_cached(
    row: WalletAddress,
    *,
    keyring: vault.Keyring,
    seeds: dict[int, bytes],
    parents: dict[tuple[int, str], hd.ExtendedKey],
) -> bytes:
    """_private_key, with the seeds decrypted and the parent keys derived kept in the caller's dicts."""
    secret = row.key_secret
    if secret.kind != SecretKind.HD_SEED:
        return _private_key(row)
    path = row.derivation_path or ""
    indexes = hd.path_parse(path)
    if not indexes or indexes[-1] >= hd.HARDENED:
        return _private_key(row)  # no step, or a hardened last one: derived whole, as one by one
    parent_path = path.strip().rpartition("/")[0]
    parent = parents.get((secret.id, parent_path))
    if parent is None:
        if secret.id not in seeds:
            seeds[secret.id] = _secret_open(secret, keyring)
        parent = parents[(secret.id, parent_path)] = hd.ExtendedKey.from_seed(seeds[secret.id]).derive(parent_path)
    node = parent.child(indexes[-1])
    # A row whose path or vault entry was tampered with must not sign for someone else's key.
    if hd.address_from_public_key(row.chain_id, node.public_key) != row.address:
        raise SignerError(f"The key of {row.address} does not match its address.")
    return node.private_key


@sensitive_variables()
def sign_btc_inputs(unsigned: UnsignedTx, *, input_addresses: list[str]) -> SignedTx:
    """
    Sign a BTC transaction whose inputs spend from several of our addresses (a sweep consolidating
    deposit outputs): input i with the key of input_addresses[i].

    :raises SignerError: an address that is not ours or is watch-only, a count that does not match
        the inputs, an input whose public key is not its address's, or a result that does not verify.
    """
    from bitcoinlib.keys import Key
    from bitcoinlib.transactions import Transaction

    payload = unsigned.payload
    if unsigned.chain_id != "BTC" or not isinstance(payload, Transaction):
        raise SignerError("A BTC payload is a bitcoinlib Transaction.")
    if not payload.inputs or len(payload.inputs) != len(input_addresses):
        raise SignerError("Every input needs its address.")
    keys: dict[str, Key] = {}
    for index, (inp, address) in enumerate(zip(payload.inputs, input_addresses, strict=True)):
        if address not in keys:
            row = _signing_address("BTC", address)
            if row.address_type not in _BTC_SWEEP_TYPES:
                raise SignerError("An input spends from an address of a kind a sweep does not spend.")
            keys[address] = Key(_private_key(row), network=_bitcoinlib_network(), compressed=True)
        key = keys[address]
        if [k.public_byte for k in inp.keys] != [key.public_byte]:
            raise SignerError("An input does not spend from the address given for it.")
        payload.sign(keys=[key], index_n=index)
    payload.txid = payload.signature_hash()[::-1].hex()
    payload.size = len(payload.raw())
    payload.calc_weight_units()
    payload.update_totals()
    if not payload.verify():
        raise SignerError("The signed BTC transaction does not verify.")
    logger.info("signed BTC transaction %s from %s addresses", payload.txid, len(keys))
    return SignedTx(tx_hash=payload.txid, raw=payload.raw_hex())


# --- signed messages (proof of reserves) ----------------------------------------------


def _varint(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    return b"\xfd" + n.to_bytes(2, "little") if n <= 0xFFFF else b"\xfe" + n.to_bytes(4, "little")


@sensitive_variables()
def _message_sign_btc(message: str, key: bytes) -> str:
    from coincurve import PrivateKey

    from chains.codecs import sha256d

    body = message.encode()
    digest = sha256d(_varint(24) + b"Bitcoin Signed Message:\n" + _varint(len(body)) + body)
    signature = PrivateKey(key).sign_recoverable(digest, hasher=None)
    # BIP-137 header for a P2WPKH (bech32) address: 39 + recovery id; then r and s.
    return base64.b64encode(bytes([39 + signature[64]]) + signature[:64]).decode()


@sensitive_variables()
def _message_sign_eth(message: str, key: bytes) -> str:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    return "0x" + bytes(Account.sign_message(encode_defunct(text=message), key).signature).hex()


@sensitive_variables()
def _message_sign_tron(message: str, key: bytes) -> str:
    from tronpy import keys as tron_keys

    # TRON's signMessageV2: keccak256("\x19TRON Signed Message:\n" + length + message), v as 27/28.
    signature = tron_keys.PrivateKey(key).sign_msg(message.encode()).to_bytes()
    return "0x" + (signature[:64] + bytes([27 + signature[64]])).hex()


_MESSAGE_SIGNERS: dict[str, Callable[[str, bytes], str]] = {
    "BTC": _message_sign_btc,
    "ETH": _message_sign_eth,
    "TRON": _message_sign_tron,
}


@sensitive_variables()
def message_sign(*, chain_id: str, address: str, message: str) -> str:
    """
    Return address's signature of a text message in its chain's signed-message scheme: BTC
    BIP-137 (base64), ETH EIP-191 personal_sign (0x hex r+s+v), TRON signMessageV2 (0x hex r+s+v).

    For statements such as a proof-of-reserves snapshot; a transaction is never signed this way
    (each scheme prefixes the message so that no signed message is a valid transaction).
    :raises SignerError: not our address on chain_id, watch-only, or a key that does not match it.
    """
    if chain_id not in _MESSAGE_SIGNERS:
        raise SignerError(f"No message signer for chain {chain_id!r}.")
    row = _signing_address(chain_id, address)
    signature = _MESSAGE_SIGNERS[chain_id](message, _private_key(row))
    logger.info("signed a %s message with %s", chain_id, row.address)
    return signature


def mnemonic_backup_write(*, path: Path, mnemonic: str) -> None:
    """Write a mnemonic to a new file readable by its owner only (the operator's offline backup)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(mnemonic + "\n")
