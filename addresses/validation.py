"""
Validation of external addresses (withdrawal destinations), one function for every chain.

BTC: bech32 (witness v0) / bech32m (v1+) with the configured network's prefix, or base58check
P2PKH/P2SH with the network's version byte. ETH: 0x + 40 hex; all-lower or all-upper is
accepted, mixed case must match its EIP-55 checksum. TRON: base58check of 0x41 + 20 bytes.
"""

from __future__ import annotations

from addresses import hd
from chains.codecs import DecodeError, b58check_decode, eip55, segwit_decode
from wallet_project.errors import WalletError

# Base58 version bytes: (P2PKH, P2SH). Testnet and regtest share theirs.
BTC_BASE58_VERSIONS = {"mainnet": (0x00, 0x05), "testnet": (0x6F, 0xC4), "regtest": (0x6F, 0xC4)}
BTC_ALL_HRPS = ("bc", "tb", "bcrt", "rb")


class InvalidAddress(WalletError):
    code = "invalid_address"


def _refuse(message: str) -> InvalidAddress:
    return InvalidAddress(message, field="to_address")


def _btc(address: str) -> str:
    network = hd.btc_network()
    hrp = hd.btc_hrp()
    lowered = address.lower()
    if lowered.startswith(tuple(h + "1" for h in {*BTC_ALL_HRPS, hrp})):
        try:
            found_hrp, _witver, _program = segwit_decode(address)
        except DecodeError:
            raise _refuse("Not a valid bech32/bech32m Bitcoin address (bad checksum or format).") from None
        if found_hrp != hrp:
            raise _refuse(f"This Bitcoin address is for another network; this wallet runs on {network}.")
        return lowered
    try:
        payload = b58check_decode(address)
    except DecodeError:
        raise _refuse("Not a valid Bitcoin address (bad checksum or format).") from None
    if len(payload) != 21:
        raise _refuse("Not a valid Bitcoin address (bad length).")
    if payload[0] not in BTC_BASE58_VERSIONS[network]:
        known = {v for versions in BTC_BASE58_VERSIONS.values() for v in versions}
        if payload[0] in known:
            raise _refuse(f"This Bitcoin address is for another network; this wallet runs on {network}.")
        raise _refuse("Not a valid Bitcoin address (unknown version).")
    return address


def _eth(address: str) -> str:
    if len(address) != 42 or not address.startswith(("0x", "0X")):
        raise _refuse("An Ethereum address is 0x followed by 40 hexadecimal characters.")
    body = address[2:]
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise _refuse("An Ethereum address is 0x followed by 40 hexadecimal characters.") from None
    checksummed = eip55(raw)
    if body != body.lower() and body != body.upper() and "0x" + body != checksummed:
        raise _refuse("The Ethereum address has a wrong EIP-55 checksum (mixed case).")
    return checksummed


def _tron(address: str) -> str:
    try:
        payload = b58check_decode(address)
    except DecodeError:
        raise _refuse("Not a valid TRON address (bad checksum or format).") from None
    if len(payload) != 21 or payload[0] != 0x41:
        raise _refuse("Not a valid TRON address (it must start with T, version 0x41).")
    return address


_VALIDATORS = {"BTC": _btc, "ETH": _eth, "TRON": _tron}


def address_validate(chain_id: str, address: str) -> str:
    """
    Return the canonical form of an external address of chain_id (BTC, ETH or TRON).

    Canonical: bech32 lower case, EIP-55 for ETH, base58 unchanged.
    :raises InvalidAddress: (field "to_address") malformed, bad checksum, or another network's address.
    """
    if not isinstance(address, str):
        raise _refuse("An address is a string.")
    text = address.strip()
    if not text or len(text) > 128 or not text.isascii():
        raise _refuse("Not a valid address.")
    try:
        validator = _VALIDATORS[chain_id]
    except KeyError:
        raise InvalidAddress(f"Unknown chain {chain_id!r}.", field="chain_id") from None
    return validator(text)
