"""
BIP32 hierarchical deterministic keys on coincurve, and the address of a public key per chain.

Paths: BTC BIP84 m/84'/c'/0'/0/i (c = 0 on mainnet, 1 on testnet and regtest), ETH BIP44
m/44'/60'/0'/0/i, TRON BIP44 m/44'/195'/0'/0/i. Bulk derivation (`addresses_derive`) works from
the account's extended public key only: deposit addresses are made without touching a secret.

Private keys live here only transiently, inside `ExtendedKey` objects built by the signer from a
decrypted seed; their repr never shows the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field

from coincurve import PrivateKey, PublicKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT
from django.conf import settings

from chains.codecs import b58check_decode, b58check_encode, eip55, hash160, keccak256, segwit_encode

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HARDENED = 0x80000000
XPRV_VERSION = bytes.fromhex("0488ade4")
XPUB_VERSION = bytes.fromhex("0488b21e")

CHAINS = ("BTC", "ETH", "TRON")


class DerivationError(ValueError):
    """An invalid path, extended key or derived key (the last happens with probability < 2^-127)."""


@dataclass(frozen=True)
class ExtendedKey:
    depth: int
    parent_fingerprint: bytes
    child_number: int
    chain_code: bytes = field(repr=False)
    public_key: bytes  # 33-byte compressed
    private_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> ExtendedKey:
        """Return the BIP32 master key of a seed (16 to 64 bytes)."""
        if not 16 <= len(seed) <= 64:
            raise DerivationError("a BIP32 seed has 16 to 64 bytes")
        digest = hmac.digest(b"Bitcoin seed", seed, "sha512")
        key, chain_code = digest[:32], digest[32:]
        if not 0 < int.from_bytes(key, "big") < CURVE_ORDER:
            raise DerivationError("invalid master key")
        return cls(0, b"\0\0\0\0", 0, chain_code, PrivateKey(key).public_key.format(), key)

    @classmethod
    def from_private_key(cls, key: bytes) -> ExtendedKey:
        """Wrap a bare private key (an imported key): no chain code, no children."""
        return cls(0, b"\0\0\0\0", 0, b"\0" * 32, PrivateKey(key).public_key.format(), key)

    @property
    def fingerprint(self) -> bytes:
        return hash160(self.public_key)[:4]

    @property
    def is_private(self) -> bool:
        return self.private_key is not None

    def neuter(self) -> ExtendedKey:
        return ExtendedKey(self.depth, self.parent_fingerprint, self.child_number, self.chain_code, self.public_key)

    def child(self, index: int) -> ExtendedKey:
        """Return child `index` (>= 2^31 is hardened and needs the private key)."""
        if not 0 <= index < 2**32:
            raise DerivationError("child index out of range")
        if index >= HARDENED:
            if self.private_key is None:
                raise DerivationError("a hardened child needs the private key")
            data = b"\0" + self.private_key + index.to_bytes(4, "big")
        else:
            data = self.public_key + index.to_bytes(4, "big")
        digest = hmac.digest(self.chain_code, data, "sha512")
        tweak, chain_code = digest[:32], digest[32:]
        if int.from_bytes(tweak, "big") >= CURVE_ORDER:
            raise DerivationError("invalid child, use the next index")
        try:
            if self.private_key is not None:
                child_key = PrivateKey(self.private_key).add(tweak)
                return ExtendedKey(
                    self.depth + 1, self.fingerprint, index, chain_code, child_key.public_key.format(), child_key.secret
                )
            child_pub = PublicKey(self.public_key).add(tweak)
        except ValueError:
            raise DerivationError("invalid child, use the next index") from None
        return ExtendedKey(self.depth + 1, self.fingerprint, index, chain_code, child_pub.format())

    def derive(self, path: str) -> ExtendedKey:
        """Return the key at a path relative to this one ("m/44'/60'/0'/0/7" from a master key)."""
        node = self
        for index in path_parse(path):
            node = node.child(index)
        return node

    def _serialize(self, version: bytes, key_data: bytes) -> str:
        return b58check_encode(
            version
            + bytes([self.depth])
            + self.parent_fingerprint
            + self.child_number.to_bytes(4, "big")
            + self.chain_code
            + key_data
        )

    def xpub(self) -> str:
        return self._serialize(XPUB_VERSION, self.public_key)

    def xprv(self) -> str:
        if self.private_key is None:
            raise DerivationError("a public key has no xprv")
        return self._serialize(XPRV_VERSION, b"\0" + self.private_key)

    @classmethod
    def from_xpub(cls, text: str) -> ExtendedKey:
        """Parse a mainnet-versioned extended public key (the form we store account keys in)."""
        try:
            raw = b58check_decode(text)
        except ValueError:
            raise DerivationError("not an extended public key") from None
        if len(raw) != 78 or raw[:4] != XPUB_VERSION:
            raise DerivationError("not an extended public key")
        try:
            PublicKey(raw[45:78])
        except ValueError:
            raise DerivationError("invalid public key in extended key") from None
        return cls(raw[4], raw[5:9], int.from_bytes(raw[9:13], "big"), raw[13:45], raw[45:78])


def path_parse(path: str) -> list[int]:
    """Return the child indexes of "m/84'/0'/0'/0/5" (also "h" for hardened); "m" alone is []."""
    parts = path.strip().split("/")
    if parts[0] != "m":
        raise DerivationError("a path starts with m")
    indexes = []
    for part in parts[1:]:
        hardened = part.endswith(("'", "h", "H"))
        digits = part[:-1] if hardened else part
        if not digits.isdigit() or int(digits) >= HARDENED:
            raise DerivationError("bad path element")
        indexes.append(int(digits) + (HARDENED if hardened else 0))
    return indexes


# --- chains --------------------------------------------------------------------------

BTC_HRPS = {"mainnet": "bc", "testnet": "tb"}


def btc_network() -> str:
    network = settings.BTC_NETWORK
    if network not in ("mainnet", "testnet", "regtest"):
        raise DerivationError("BTC_NETWORK must be mainnet, testnet or regtest")
    return network


def btc_hrp() -> str:
    """The bech32 prefix of the configured network (regtest: BTC_REGTEST_HRP, bcrt or bcoin's rb)."""
    network = btc_network()
    return settings.BTC_REGTEST_HRP if network == "regtest" else BTC_HRPS[network]


def account_path(chain_id: str) -> str:
    """The hardened account path whose extended public key derives the chain's addresses."""
    if chain_id == "BTC":
        return "m/84'/0'/0'" if btc_network() == "mainnet" else "m/84'/1'/0'"
    if chain_id == "ETH":
        return "m/44'/60'/0'"
    if chain_id == "TRON":
        return "m/44'/195'/0'"
    raise DerivationError(f"unknown chain {chain_id!r}")


def address_path(chain_id: str, index: int) -> str:
    """The full path of external (receive) address `index`."""
    return f"{account_path(chain_id)}/0/{index}"


def _evm_hash20(uncompressed: bytes) -> bytes:
    return keccak256(uncompressed[1:])[-20:]


def tron_address_from_hash20(hash20: bytes) -> str:
    return b58check_encode(b"\x41" + hash20)


def address_from_public_key(chain_id: str, public_key: bytes) -> str:
    """Return the chain's address of a public key (compressed or uncompressed bytes)."""
    pub = PublicKey(public_key)
    if chain_id == "BTC":
        return segwit_encode(btc_hrp(), 0, hash160(pub.format(compressed=True)))
    if chain_id == "ETH":
        return eip55(_evm_hash20(pub.format(compressed=False)))
    if chain_id == "TRON":
        return tron_address_from_hash20(_evm_hash20(pub.format(compressed=False)))
    raise DerivationError(f"unknown chain {chain_id!r}")


def addresses_derive(chain_id: str, account_xpub: str, start: int, count: int) -> Iterator[tuple[int, str]]:
    """
    Yield (index, address) of external addresses start .. start+count-1 from the account xpub.

    The fast path: child public keys are made with secp256k1's generator multiplication of the
    BIP32 tweak plus one point addition to the parent key, through coincurve's C bindings with
    reused buffers (no Python key objects per address). An index whose tweak is invalid
    (probability < 2^-127) is skipped, as BIP32 says.
    """
    external = ExtendedKey.from_xpub(account_xpub).child(0)
    ctx = GLOBAL_CONTEXT.ctx
    parent = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_parse(ctx, parent, external.public_key, 33):
        raise DerivationError("invalid public key in extended key")
    tweak_point = ffi.new("secp256k1_pubkey *")
    child = ffi.new("secp256k1_pubkey *")
    pair = ffi.new("secp256k1_pubkey *[2]", [parent, tweak_point])
    out = ffi.new("unsigned char [65]")
    out_len = ffi.new("size_t *")
    compressed = chain_id == "BTC"
    flag = lib.SECP256K1_EC_COMPRESSED if compressed else lib.SECP256K1_EC_UNCOMPRESSED
    size = 33 if compressed else 65
    hrp = btc_hrp() if compressed else ""
    prefix, chain_code = external.public_key, external.chain_code
    # HMAC-SHA512 keyed by the chain code: the keyed state is made once and copied per child,
    # which skips re-hashing the key pads (a third of a one-shot hmac.digest's cost).
    keyed = hmac.new(chain_code, digestmod="sha512")
    if chain_id not in CHAINS:
        raise DerivationError(f"unknown chain {chain_id!r}")
    if start < 0 or count < 0 or start + count > HARDENED:
        raise DerivationError("index out of range")
    for index in range(start, start + count):
        mac = keyed.copy()
        mac.update(prefix + index.to_bytes(4, "big"))
        tweak = mac.digest()[:32]
        # pubkey_create refuses a tweak of 0 or >= n; combine refuses the point at infinity.
        if not lib.secp256k1_ec_pubkey_create(ctx, tweak_point, tweak):
            continue
        if not lib.secp256k1_ec_pubkey_combine(ctx, child, pair, 2):
            continue
        out_len[0] = size
        lib.secp256k1_ec_pubkey_serialize(ctx, out, out_len, child, flag)
        serialized = bytes(ffi.buffer(out, size))
        if compressed:
            yield index, segwit_encode(hrp, 0, hashlib.new("ripemd160", hashlib.sha256(serialized).digest()).digest())
        elif chain_id == "ETH":
            yield index, eip55(keccak256(serialized[1:])[-20:])
        else:
            yield index, tron_address_from_hash20(keccak256(serialized[1:])[-20:])
