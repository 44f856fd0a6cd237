"""
Fixtures of the addresses tests: throwaway KEKs and seeds, and a watch for leaked secrets.

Every secret a test creates is registered in `leak_watch`. After each test, every log record it
produced (captured at DEBUG, before redaction) and every API response body it received through
`api_recorder` is searched for each registered secret in each of its usual encodings; a hit
fails the test.
"""

from __future__ import annotations

import base64
import logging

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from addresses import hd, signer
from addresses.models import AddressType

# TEST-ONLY key-encryption keys and mnemonics: throwaway values that never guard real funds.
TEST_KEK_V1 = bytes(range(1, 33))
TEST_KEK_V2 = bytes(range(101, 133))
# The BIP39 reference vectors' mnemonics (entropy 00..00 and 7f..7f).
TEST_MNEMONIC_DEPOSIT = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
TEST_MNEMONIC_HOT = "legal winner thank year wave sausage worth useful legal winner thank yellow"


def kek_env(*versions: tuple[int, bytes]) -> str:
    return ",".join(f"{v}:{base64.b64encode(k).decode()}" for v, k in versions)


class LeakWatch:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.texts: list[str] = []

    def add(self, name: str, value: str | bytes) -> None:
        if isinstance(value, bytes):
            self.secrets[f"{name} hex"] = value.hex()
            self.secrets[f"{name} base64"] = base64.b64encode(value).decode()
            if len(value) == 32:
                self.secrets[f"{name} 0x"] = "0x" + value.hex()
        else:
            self.secrets[name] = value
            words = value.split()
            if len(words) >= 12:  # a mnemonic: also any run of its first 6 words
                self.secrets[f"{name} (first words)"] = " ".join(words[:6])

    def add_seed(self, name: str, mnemonic: str, passphrase: str = "") -> bytes:
        from eth_account.hdaccount.mnemonic import Mnemonic

        seed = Mnemonic.to_seed(mnemonic, passphrase)
        self.add(f"{name} mnemonic", mnemonic)
        self.add(f"{name} seed", seed)
        root = hd.ExtendedKey.from_seed(seed)
        self.add(f"{name} master xprv", root.xprv())
        self.add(f"{name} master key", root.private_key)
        return seed

    def hits(self, text: str) -> list[str]:
        lowered = text.lower()
        return [name for name, value in self.secrets.items() if value.lower() in lowered]


@pytest.fixture
def leak_watch() -> LeakWatch:
    return LeakWatch()


@pytest.fixture(autouse=True)
def _no_secret_leaks(request, caplog, leak_watch):
    caplog.set_level(logging.DEBUG)
    leak_watch.add("KEK v1", TEST_KEK_V1)
    leak_watch.add("KEK v2", TEST_KEK_V2)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call") + caplog.get_records("teardown")
    texts = [r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "") for r in records]
    for text in texts + leak_watch.texts:
        hits = leak_watch.hits(text)
        assert not hits, f"secret(s) {hits} leaked into a log line or response"


@pytest.fixture(autouse=True)
def test_kek(monkeypatch, settings, tmp_path):
    """Version 1 of a throwaway KEK in WALLET_KEK; no KEK file, no dev KEK in the work tree."""
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1)))
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_KEK_VERSION = 0
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"
    settings.BTC_NETWORK = "regtest"
    settings.BTC_REGTEST_HRP = "bcrt"


class RecordingClient(APIClient):
    """An API client that hands every response body to the leak watch."""

    def __init__(self, leak_watch: LeakWatch, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.leak_watch = leak_watch

    def request(self, **kwargs: object):
        response = super().request(**kwargs)
        self.leak_watch.texts.append(response.content.decode(errors="replace"))
        return response


@pytest.fixture
def api_recorder(leak_watch) -> RecordingClient:
    return RecordingClient(leak_watch)


@pytest.fixture
def user_client(user, leak_watch) -> RecordingClient:
    client = RecordingClient(leak_watch)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def seeded_coins(db):
    """The coins of the seed data migration: a transactional test before this one may have flushed them."""
    from coins.testing import coins_seed

    coins_seed()


@pytest.fixture
def deposit_seeds(seeded_coins, leak_watch):
    """Deposit HD seeds of BTC, ETH and TRON from the throwaway test mnemonic."""
    leak_watch.add_seed("deposit", TEST_MNEMONIC_DEPOSIT)
    return {
        chain: signer.hd_wallet_create(
            chain_id=chain, purpose=AddressType.USER_DEPOSIT, mnemonic=TEST_MNEMONIC_DEPOSIT, label="test-only"
        )
        for chain in hd.CHAINS
    }


@pytest.fixture
def hot_seeds(seeded_coins, leak_watch):
    """Hot HD seeds of BTC, ETH and TRON from a second throwaway test mnemonic."""
    leak_watch.add_seed("hot", TEST_MNEMONIC_HOT)
    return {
        chain: signer.hd_wallet_create(
            chain_id=chain, purpose=AddressType.HOT, mnemonic=TEST_MNEMONIC_HOT, label="test-only"
        )
        for chain in hd.CHAINS
    }
