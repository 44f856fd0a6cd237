"""
Address encodings: base58check, bech32/bech32m (BIP173/BIP350), EIP-55, and the hashes they use.

Pure functions over bytes and strings; no keys, no database. The BTC adapter, derivation
(addresses/hd.py) and validation (addresses/validation.py) share them, so that what we derive,
what we accept and what we match on chain are one code path.
"""

from __future__ import annotations

import hashlib

try:  # A C keccak: ~5x faster than pycryptodome's, which matters for bulk ETH/TRON derivation.
    import sha3 as _sha3

    def keccak256(data: bytes) -> bytes:
        """Return Ethereum's keccak-256 (not NIST SHA3-256) of data."""
        return _sha3.keccak_256(data).digest()

except ImportError:  # pragma: no cover - the pinned requirements install safe-pysha3
    from Crypto.Hash import keccak as _keccak

    def keccak256(data: bytes) -> bytes:
        """Return Ethereum's keccak-256 (not NIST SHA3-256) of data."""
        return _keccak.new(digest_bits=256, data=data).digest()


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash160(data: bytes) -> bytes:
    """Return RIPEMD-160 of SHA-256 of data (Bitcoin's public key hash)."""
    digest = hashlib.sha256(data).digest()
    try:
        return hashlib.new("ripemd160", digest).digest()
    except ValueError:  # OpenSSL 3 without its legacy provider has no RIPEMD-160
        from Crypto.Hash import RIPEMD160

        return RIPEMD160.new(digest).digest()


# --- base58check ---------------------------------------------------------------------

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(B58_ALPHABET)}


class DecodeError(ValueError):
    """The text is not a well-formed encoding (bad alphabet, length or checksum)."""


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(B58_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        try:
            n = n * 58 + _B58_INDEX[c]
        except KeyError:
            raise DecodeError("not a base58 character") from None
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def b58check_encode(payload: bytes) -> str:
    return b58encode(payload + sha256d(payload)[:4])


def b58check_decode(text: str) -> bytes:
    """Return the payload of a base58check string.

    :raises DecodeError: bad character or checksum.
    """
    raw = b58decode(text)
    if len(raw) < 5:
        raise DecodeError("too short")
    payload, checksum = raw[:-4], raw[-4:]
    if sha256d(payload)[:4] != checksum:
        raise DecodeError("bad checksum")
    return payload


# --- bech32 / bech32m ----------------------------------------------------------------

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_INDEX = {c: i for i, c in enumerate(BECH32_CHARSET)}
BECH32_CONST = 1
BECH32M_CONST = 0x2BC830A3
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GEN[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            raise DecodeError("bad data value")
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise DecodeError("bad padding")
    return out


def segwit_encode(hrp: str, witver: int, program: bytes) -> str:
    """Return the bech32 (v0) or bech32m (v1+) address of a witness program."""
    data = [witver, *_convertbits(program, 8, 5, True)]
    const = BECH32_CONST if witver == 0 else BECH32M_CONST
    polymod = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32_CHARSET[d] for d in data + checksum)


def segwit_decode(address: str) -> tuple[str, int, bytes]:
    """Return (hrp, witness version, program) of a segwit address, checking BIP173/BIP350 rules.

    :raises DecodeError: mixed case, bad character, length, checksum variant or program size.
    """
    if address.lower() != address and address.upper() != address:
        raise DecodeError("mixed case")
    address = address.lower()
    pos = address.rfind("1")
    if pos < 1 or pos + 7 > len(address) or len(address) > 90:
        raise DecodeError("bad separator position or length")
    if any(ord(c) < 33 or ord(c) > 126 for c in address):
        raise DecodeError("bad character")
    hrp = address[:pos]
    try:
        data = [_BECH32_INDEX[c] for c in address[pos + 1 :]]
    except KeyError:
        raise DecodeError("not a bech32 character") from None
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (BECH32_CONST, BECH32M_CONST):
        raise DecodeError("bad checksum")
    if not data[:-6]:
        raise DecodeError("no witness version")
    witver = data[0]
    if witver > 16:
        raise DecodeError("bad witness version")
    program = bytes(_convertbits(data[1:-6], 5, 8, False))
    if not 2 <= len(program) <= 40:
        raise DecodeError("bad program length")
    if witver == 0 and len(program) not in (20, 32):
        raise DecodeError("bad v0 program length")
    if (witver == 0) != (const == BECH32_CONST):
        raise DecodeError("wrong checksum variant for the witness version")
    return hrp, witver, program


# --- EIP-55 --------------------------------------------------------------------------

_NIBBLE_MASK = bytes.maketrans(b"0123456789abcdef", b"\x00" * 8 + b"\xff" * 8)
_ALL_ONES_320 = (1 << 320) - 1


def eip55(address_bytes: bytes) -> str:
    """Return the EIP-55 mixed-case 0x address of 20 bytes.

    A letter is upper case where the matching nibble of keccak(lower-case hex) is >= 8. Done
    with integer masks over the 40 characters instead of a character loop: bulk derivation
    calls this once per address.
    """
    lower = address_bytes.hex().encode()
    mask = int.from_bytes(keccak256(lower).hex().encode()[:40].translate(_NIBBLE_MASK), "big")
    upper = lower.upper()
    mixed = (int.from_bytes(upper, "big") & mask) | (int.from_bytes(lower, "big") & (_ALL_ONES_320 ^ mask))
    return "0x" + mixed.to_bytes(40, "big").decode()
