#!/usr/bin/env python3
"""
Verify a proof of reserves offline: your balance is counted in the published Merkle-sum tree, and
the exchange's addresses signed the snapshot.

    python tools/verify_reserves.py proof.json --root ROOT --total TOTAL [--user-id ID]

`proof.json` is what GET /api/v1/wallet/reserves/proof?coin=COIN answered you; ROOT and TOTAL are
the root and total the exchange published for that coin and snapshot (compare them with what
other users and auditors see). Nothing here talks to a network or imports Django. The Merkle part
needs only hashlib; address signatures need coincurve, and for ETH and TRON a keccak (pysha3,
pycryptodome or eth-hash: eth-account installs them). Without them, run with --no-signatures.

Exit status: 0 every check passed; 1 a check failed; 2 unreadable input, or address signatures
that could not be checked (a missing library) without --no-signatures.

This file is also the one definition of the tree's hashing and of the signed statement: the
wallet builds snapshots and checks ops-supplied signatures with these same functions.

The tree (one per coin and snapshot):
- leaf  = SHA-256(0x00 | salt (32 bytes) | user id (8 bytes, big-endian) | balance (16 bytes, big-endian))
  The balance is what the user owns, in the coin's base units (satoshi, wei, sun), never negative.
  The salt is yours alone (one per user and snapshot): other users see your leaf's hash as a
  sibling and cannot tell whose it is or test guesses of your id.
- node  = SHA-256(0x01 | left hash | left sum (16 bytes) | right hash | right sum (16 bytes));
  its sum is left sum + right sum. Both children's sums are inside the hash, so the sibling sums
  shown to you are the ones the root commits to (a node committing only to its total would let
  the exchange show each side a different split of it and understate the total).
- A level with an odd number of nodes is completed by the empty node: SHA-256(0x02 | "empty"), sum 0.
- Sums are unsigned 16-byte integers: a negative value cannot be encoded, and the verifier refuses
  any leaf, sibling or node sum below 0 or at or above 2**128 (a wrapped-around "negative" sum).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

LEAF_TAG = b"\x00"
NODE_TAG = b"\x01"
EMPTY_HASH = hashlib.sha256(b"\x02empty").digest()
SALT_BYTES = 32
USER_ID_BYTES = 8
SUM_BYTES = 16
SUM_LIMIT = 1 << (8 * SUM_BYTES)
PROOF_FORMAT = "wallet-reserves-proof/1"


class ProofError(ValueError):
    """The proof does not verify, or is malformed; the message says which check failed."""


class SignatureUnchecked(RuntimeError):
    """A library needed to check a signature is missing."""


# --- the tree -------------------------------------------------------------------------------------


def _sum_bytes(value: int, what: str) -> bytes:
    if value < 0:
        raise ProofError(f"{what} is negative ({value}): a balance or sum is never below zero")
    if value >= SUM_LIMIT:
        raise ProofError(f"{what} does not fit in {SUM_BYTES} bytes ({value})")
    return value.to_bytes(SUM_BYTES, "big")


def leaf_hash(*, salt: bytes, user_id: int, balance: int) -> bytes:
    """Return the hash of a user's leaf. :raises ProofError: a negative or oversized balance, bad salt or id."""
    if len(salt) != SALT_BYTES:
        raise ProofError(f"the salt must be {SALT_BYTES} bytes")
    if not 0 <= user_id < 1 << (8 * USER_ID_BYTES):
        raise ProofError(f"user id {user_id} is out of range")
    return hashlib.sha256(
        LEAF_TAG + salt + user_id.to_bytes(USER_ID_BYTES, "big") + _sum_bytes(balance, "the leaf's balance")
    ).digest()


def node_hash(left_hash: bytes, left_sum: int, right_hash: bytes, right_sum: int) -> bytes:
    """Return the hash of the node over two children. :raises ProofError: a sum out of range."""
    return hashlib.sha256(
        NODE_TAG + left_hash + _sum_bytes(left_sum, "a left sum") + right_hash + _sum_bytes(right_sum, "a right sum")
    ).digest()


def snapshot_root(coins: Iterable[tuple[str, str, int]]) -> str:
    """Return the hex commitment to every coin's (coin, root hex, total) of a snapshot: what the addresses sign."""
    lines = "".join(f"{coin} {root} {total}\n" for coin, root, total in sorted(coins))
    return hashlib.sha256(b"wallet-reserves-snapshot-v1\n" + lines.encode()).hexdigest()


def statement(*, snapshot_id: int, snapshot_root_hex: str, taken_at: str) -> str:
    """Return the text every exchange address signs for a snapshot."""
    return f"wallet reserves snapshot {snapshot_id} {snapshot_root_hex} {taken_at}"


def _int(value: object, what: str) -> int:
    # Base-unit integers travel as decimal strings (JSON numbers lose digits in many readers).
    if isinstance(value, bool):
        raise ProofError(f"{what} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and value.isascii():
        return int(value)
    raise ProofError(f"{what} is not an integer")


def _hex(value: object, what: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(str(value).removeprefix("0x"))
    except ValueError:
        raise ProofError(f"{what} is not hex") from None
    if len(raw) != size:
        raise ProofError(f"{what} must be {size} bytes")
    return raw


@dataclass(frozen=True)
class MerkleResult:
    root: str
    total: int
    balance: int
    user_id: int
    depth: int


def merkle_verify(proof: dict, *, root: str | None = None, total: int | None = None) -> MerkleResult:
    """
    Recompute the root and total from the proof's leaf and sibling path; compare them with the
    published ones (root, total), else with the proof's own.

    :raises ProofError: the first check that fails.
    """
    try:
        leaf = proof["leaf"]
        path = proof["path"]
        index = _int(leaf["index"], "the leaf index")
        user_id = _int(leaf["user_id"], "the user id")
        balance = _int(leaf["balance"], "the leaf's balance")
        salt = _hex(leaf["salt"], "the salt", SALT_BYTES)
    except (KeyError, TypeError):
        raise ProofError("the proof lacks its leaf or path") from None
    if not isinstance(path, list):
        raise ProofError("the path is not a list")
    if index < 0 or index >> len(path):
        raise ProofError(f"leaf index {index} is outside a tree of depth {len(path)}")
    current = leaf_hash(salt=salt, user_id=user_id, balance=balance)
    current_sum = balance
    for level, sibling in enumerate(path):
        try:
            sibling_hash = _hex(sibling["hash"], f"the sibling hash at level {level}", 32)
            sibling_sum = _int(sibling["sum"], f"the sibling sum at level {level}")
        except (KeyError, TypeError):
            raise ProofError(f"sibling {level} lacks its hash or sum") from None
        _sum_bytes(sibling_sum, f"the sibling sum at level {level}")
        if (index >> level) & 1:
            current = node_hash(sibling_hash, sibling_sum, current, current_sum)
        else:
            current = node_hash(current, current_sum, sibling_hash, sibling_sum)
        current_sum += sibling_sum
        _sum_bytes(current_sum, f"the node sum at level {level + 1}")
    expected_root = (root if root is not None else str(proof.get("root", ""))).lower().removeprefix("0x")
    expected_total = total if total is not None else _int(proof.get("total"), "the proof's total")
    if current.hex() != expected_root:
        raise ProofError(f"the path leads to root {current.hex()}, not to the published root {expected_root}")
    if current_sum != expected_total:
        raise ProofError(f"the path sums to {current_sum}, not to the published total {expected_total}")
    # What the proof says of itself must agree with what was published (the recomputation above decides).
    if "root" in proof and str(proof["root"]).lower().removeprefix("0x") != expected_root:
        raise ProofError("the proof names another root than the published one")
    if "total" in proof and _int(proof["total"], "the proof's total") != expected_total:
        raise ProofError("the proof names another total than the published one")
    return MerkleResult(root=current.hex(), total=current_sum, balance=balance, user_id=user_id, depth=len(path))


# --- address signatures ---------------------------------------------------------------------------

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _keccak256(data: bytes) -> bytes:
    try:
        import sha3

        return sha3.keccak_256(data).digest()
    except ImportError:
        pass
    try:
        from Crypto.Hash import keccak

        return keccak.new(digest_bits=256, data=data).digest()
    except ImportError:
        pass
    try:
        from eth_hash.auto import keccak as eth_keccak

        return eth_keccak(data)
    except ImportError:
        raise SignatureUnchecked("no keccak: install pysha3, pycryptodome or eth-hash") from None


def _hash160(data: bytes) -> bytes:
    digest = hashlib.sha256(data).digest()
    try:
        return hashlib.new("ripemd160", digest).digest()
    except ValueError:
        try:
            from Crypto.Hash import RIPEMD160
        except ImportError:
            raise SignatureUnchecked("no RIPEMD-160: install pycryptodome") from None
        return RIPEMD160.new(digest).digest()


def _recover(signature64: bytes, recid: int, digest: bytes, *, compressed: bool) -> bytes:
    try:
        from coincurve import PublicKey
    except ImportError:
        raise SignatureUnchecked("no secp256k1: install coincurve") from None
    try:
        key = PublicKey.from_signature_and_message(signature64 + bytes([recid]), digest, hasher=None)
    except Exception:  # coincurve raises ValueError or its own errors for a non-recoverable signature
        raise ProofError("the signature does not recover a public key") from None
    return key.format(compressed=compressed)


def _b58check_decode(text: str) -> bytes:
    number = 0
    for char in text:
        if char not in B58:
            raise ProofError("not a base58 address")
        number = number * 58 + B58.index(char)
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    raw = b"\0" * (len(text) - len(text.lstrip("1"))) + raw
    payload, checksum = raw[:-4], raw[-4:]
    if len(raw) < 5 or hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise ProofError("bad base58check checksum")
    return payload


def _bech32_polymod(values: list[int]) -> int:
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if (top >> i) & 1 else 0
    return chk


def _segwit_v0_program(address: str) -> bytes | None:
    """The 20- or 32-byte program of a bech32 (v0) address, or None if it is not one."""
    text = address.lower()
    hrp, sep, data_part = text.rpartition("1")
    if not sep or not hrp or len(data_part) < 7 or any(c not in BECH32 for c in data_part):
        return None
    data = [BECH32.index(c) for c in data_part]
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    if _bech32_polymod(expanded + data) != 1 or data[0] != 0:
        return None
    acc = bits = 0
    program = bytearray()
    for value in data[1:-6]:
        acc = (acc << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            program.append((acc >> bits) & 0xFF)
    return bytes(program) if len(program) in (20, 32) else None


def _bip137_digest(message: str) -> bytes:
    def varint(n: int) -> bytes:
        if n < 0xFD:
            return bytes([n])
        return b"\xfd" + n.to_bytes(2, "little") if n <= 0xFFFF else b"\xfe" + n.to_bytes(4, "little")

    body = message.encode()
    data = varint(24) + b"Bitcoin Signed Message:\n" + varint(len(body)) + body
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def btc_verify(*, address: str, message: str, signature: str) -> bool:
    """
    Whether `signature` (BIP-137: base64 of header byte + r + s) is address's key signing message.

    Single-key addresses only: P2WPKH (bech32), P2PKH and P2SH-P2WPKH (base58). The header's
    address-type hint is not trusted: the recovered key must produce the address itself.
    """
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    if len(raw) != 65 or not 27 <= raw[0] <= 42:
        return False
    recid = (raw[0] - 27) & 3
    compressed = raw[0] >= 31
    try:
        public = _recover(raw[1:], recid, _bip137_digest(message), compressed=compressed)
    except ProofError:
        return False
    program = _segwit_v0_program(address)
    if program is not None:
        return compressed and program == _hash160(public)
    try:
        payload = _b58check_decode(address)
    except ProofError:
        return False
    if len(payload) != 21:
        return False
    if payload[0] in (0x00, 0x6F):  # P2PKH, mainnet / test networks
        return payload[1:] == _hash160(public)
    if payload[0] in (0x05, 0xC4):  # P2SH wrapping P2WPKH
        return compressed and payload[1:] == _hash160(b"\x00\x14" + _hash160(public))
    return False


def _recover_keccak_address(message_prefix: bytes, message: str, signature: str) -> bytes | None:
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
    except ValueError:
        return None
    if len(raw) != 65 or raw[64] not in (0, 1, 27, 28):
        return None
    body = message.encode()
    digest = _keccak256(message_prefix + str(len(body)).encode() + body)
    try:
        public = _recover(raw[:64], raw[64] - 27 if raw[64] >= 27 else raw[64], digest, compressed=False)
    except ProofError:
        return None
    return _keccak256(public[1:])[-20:]


def eth_verify(*, address: str, message: str, signature: str) -> bool:
    """Whether `signature` (EIP-191 personal_sign, hex r + s + v) is address's key signing message."""
    try:
        wanted = bytes.fromhex(address.removeprefix("0x"))
    except ValueError:
        return False
    signer = _recover_keccak_address(b"\x19Ethereum Signed Message:\n", message, signature)
    return len(wanted) == 20 and signer == wanted


def tron_verify(*, address: str, message: str, signature: str) -> bool:
    """Whether `signature` (TRON's signMessageV2, hex r + s + v) is address's key signing message."""
    try:
        payload = _b58check_decode(address)
    except ProofError:
        return False
    signer = _recover_keccak_address(b"\x19TRON Signed Message:\n", message, signature)
    return len(payload) == 21 and payload[0] == 0x41 and signer == payload[1:]


VERIFIERS = {"BTC": btc_verify, "ETH": eth_verify, "TRON": tron_verify}


def signature_verify(*, chain_id: str, address: str, message: str, signature: str) -> bool:
    """
    Whether signature is address's key (on chain_id) signing message.

    :raises SignatureUnchecked: a library it needs is missing.
    """
    verify = VERIFIERS.get(chain_id)
    return verify is not None and bool(signature) and verify(address=address, message=message, signature=signature)


# --- the command line ------------------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: bool = False
    unchecked: bool = False

    def ok(self, text: str) -> None:
        self.lines.append(f"OK    {text}")

    def fail(self, text: str) -> None:
        self.failed = True
        self.lines.append(f"FAIL  {text}")

    def note(self, text: str) -> None:
        self.lines.append(f"NOTE  {text}")


def _check_snapshot(proof: dict, report: Report) -> str | None:
    """Check the coin's root is among the snapshot's and the statement names them; return the statement."""
    try:
        coins = [(c["coin"], str(c["root"]).lower(), _int(c["total"], "a coin's total")) for c in proof["coins"]]
        commitment = snapshot_root(coins)
        expected = statement(
            snapshot_id=_int(proof["snapshot_id"], "the snapshot id"),
            snapshot_root_hex=commitment,
            taken_at=str(proof["taken_at"]),
        )
    except (KeyError, TypeError, ProofError) as exc:
        report.fail(f"the snapshot's coins cannot be read: {exc}")
        return None
    own = (proof.get("coin"), str(proof.get("root", "")).lower(), _int(proof.get("total"), "the proof's total"))
    if own not in coins:
        report.fail("this coin's root and total are not among the snapshot's coins")
    if commitment != str(proof.get("snapshot_root", "")).lower() or expected != proof.get("statement"):
        report.fail("the snapshot root or statement does not match the snapshot's coins")
        return None
    report.ok(f"snapshot {proof['snapshot_id']} commits to {len(coins)} coin roots: {commitment}")
    return expected


def _check_addresses(proof: dict, message: str, report: Report) -> None:
    covered = 0
    addresses = proof.get("addresses") or []
    for entry in addresses:
        chain, address, signature = entry.get("chain"), entry.get("address", ""), entry.get("signature") or ""
        try:
            balance = _int(entry.get("balance", 0), "an address balance")
        except ProofError as exc:
            report.fail(f"{chain} {address}: {exc}")
            continue
        label = f"{chain} {address} ({entry.get('kind', '?')}, {balance} at height {entry.get('height')})"
        if not signature:
            report.note(f"{label}: not signed (cold address awaiting its signature); not counted")
            continue
        try:
            good = signature_verify(chain_id=str(chain), address=address, message=message, signature=signature)
        except SignatureUnchecked as exc:
            report.unchecked = True
            report.note(f"{label}: signature NOT checked ({exc})")
            continue
        if good:
            covered += balance
            report.ok(f"{label}: signature verifies")
        else:
            report.fail(f"{label}: signature does not verify")
    total = _int(proof.get("total"), "the proof's total")
    if report.unchecked:
        return
    # The balances are the exchange's own claims: check them on the chain at the stated heights.
    if covered >= total:
        report.ok(f"the signed addresses hold {covered}, covering the users' total {total} (base units)")
    else:
        report.fail(f"the signed addresses hold {covered}, LESS than the users' total {total} (base units)")


def verify(proof: dict, *, root: str | None, total: int | None, user_id: int | None, signatures: bool) -> Report:
    """Run every check of the command line on a proof; return the report."""
    report = Report()
    if proof.get("format") != PROOF_FORMAT:
        report.fail(f"not a {PROOF_FORMAT} document")
        return report
    if root is None or total is None:
        report.note("no --root/--total given: checking against the proof's own root and total only")
    try:
        result = merkle_verify(proof, root=root, total=total)
    except ProofError as exc:
        report.fail(f"Merkle path: {exc}")
        return report
    report.ok(
        f"leaf of user {result.user_id} with balance {result.balance} is in the tree of {proof.get('coin')}: "
        f"root {result.root}, total {result.total}, depth {result.depth}"
    )
    if user_id is not None and user_id != result.user_id:
        report.fail(f"the leaf is user {result.user_id}'s, not yours ({user_id})")
    message = _check_snapshot(proof, report)
    if signatures and message is not None:
        _check_addresses(proof, message, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a wallet proof of reserves offline.")
    parser.add_argument("proof", help="the proof JSON file (- for standard input)")
    parser.add_argument("--root", help="the root the exchange published for this coin and snapshot (hex)")
    parser.add_argument("--total", help="the total the exchange published (base units)")
    parser.add_argument("--user-id", type=int, help="your user id: the leaf must be yours")
    parser.add_argument("--no-signatures", action="store_true", help="check the Merkle proof only")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.proof == "-" else Path(args.proof).read_text(encoding="utf-8")
        proof = json.loads(text)
        total = None if args.total is None else _int(args.total, "--total")
    except (OSError, ValueError) as exc:
        print(f"cannot read the proof: {exc}", file=sys.stderr)
        return 2
    if not isinstance(proof, dict):
        print("cannot read the proof: not a JSON object", file=sys.stderr)
        return 2
    report = verify(proof, root=args.root, total=total, user_id=args.user_id, signatures=not args.no_signatures)
    print("\n".join(report.lines))
    if report.failed:
        print("RESULT: FAILED")
        return 1
    if report.unchecked:
        print("RESULT: INCOMPLETE (address signatures could not be checked; see NOTE lines)")
        return 2
    print("RESULT: VERIFIED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
