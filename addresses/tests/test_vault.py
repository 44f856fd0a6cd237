"""The key vault: KEK loading, AES-256-GCM with row binding, rotation with a crash in the middle."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from addresses import signer, vault
from addresses.models import AddressType, KeySecret, SecretKind
from addresses.tests.conftest import TEST_KEK_V1, TEST_KEK_V2, TEST_MNEMONIC_DEPOSIT, kek_env

ROOT = Path(__file__).resolve().parents[2]


class TestKeyring:
    def test_reads_a_bare_base64_key_as_version_1(self, monkeypatch):
        monkeypatch.setenv("WALLET_KEK", base64.b64encode(TEST_KEK_V1).decode())

        keyring = vault.keyring_load()

        assert keyring.keys == {1: TEST_KEK_V1}
        assert keyring.current_version == 1

    def test_reads_versioned_pairs_and_encrypts_with_the_highest(self, monkeypatch):
        monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1), (2, TEST_KEK_V2)))

        keyring = vault.keyring_load()

        assert keyring.keys == {1: TEST_KEK_V1, 2: TEST_KEK_V2}
        assert keyring.current_version == 2

    def test_merges_the_file_with_the_environment(self, monkeypatch, settings, tmp_path):
        path = tmp_path / "kek"
        path.write_text("# throwaway test KEK\n" + kek_env((2, TEST_KEK_V2)) + "\n")
        settings.WALLET_KEK_FILE = str(path)

        keyring = vault.keyring_load()

        assert keyring.keys == {1: TEST_KEK_V1, 2: TEST_KEK_V2}

    def test_refuses_a_file_that_disagrees_with_the_environment(self, settings, tmp_path):
        path = tmp_path / "kek"
        path.write_text(kek_env((1, TEST_KEK_V2)))
        settings.WALLET_KEK_FILE = str(path)

        with pytest.raises(ImproperlyConfigured, match="disagree"):
            vault.keyring_load()

    @pytest.mark.parametrize(
        "text",
        [
            "1:notbase64!",
            "1:" + base64.b64encode(b"short").decode(),
            "x:" + "A" * 44,
            kek_env((1, TEST_KEK_V1), (1, TEST_KEK_V2)),
        ],
    )
    def test_refuses_malformed_keks_without_echoing_them(self, monkeypatch, text):
        monkeypatch.setenv("WALLET_KEK", text)

        with pytest.raises(ImproperlyConfigured) as caught:
            vault.keyring_load()

        assert text.split(",")[0].split(":")[-1] not in str(caught.value)

    def test_refuses_a_current_version_that_is_not_loaded(self, settings):
        settings.WALLET_KEK_VERSION = 3

        with pytest.raises(ImproperlyConfigured, match="WALLET_KEK_VERSION"):
            vault.keyring_load()

    def test_generates_a_labelled_dev_only_kek_once_in_development(self, monkeypatch, settings):
        monkeypatch.delenv("WALLET_KEK")

        first = vault.keyring_load()
        second = vault.keyring_load()

        text = Path(settings.WALLET_DEV_KEK_FILE).read_text()
        assert "DEVELOPMENT ONLY" in text
        assert first.keys == second.keys and len(first.keys[1]) == 32
        assert os.stat(settings.WALLET_DEV_KEK_FILE).st_mode & 0o777 == 0o600

    def test_production_never_falls_back_to_a_dev_kek(self, monkeypatch, settings):
        monkeypatch.delenv("WALLET_KEK")
        settings.PRODUCTION = True

        with pytest.raises(ImproperlyConfigured, match="WALLET_KEK"):
            vault.keyring_load()

        assert not Path(settings.WALLET_DEV_KEK_FILE).exists()

    def test_repr_shows_versions_only(self):
        keyring = vault.keyring_load()

        assert TEST_KEK_V1.hex() not in repr(keyring) and "versions=[1]" in repr(keyring)


def _start_in_production(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WALLET_KEK", "WALLET_KEK_FILE")}
    env.update(
        {
            "WALLET_ENV": "production",
            "DJANGO_SECRET_KEY": "test-only-secret-key-" + "x" * 40,
            "DATABASE_URL": "mysql://root:@127.0.0.1:3306/never_connected",
            "DJANGO_SETTINGS_MODULE": "wallet_project.settings",
        },
        **extra_env,
    )
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestProductionStart:
    def test_refuses_to_start_without_a_kek(self):
        result = _start_in_production({})

        assert result.returncode != 0
        assert "WALLET_KEK" in result.stderr
        assert "started" not in result.stdout

    def test_refuses_to_start_with_an_unreadable_kek_file(self, tmp_path):
        result = _start_in_production({"WALLET_KEK_FILE": str(tmp_path / "missing")})

        assert result.returncode != 0
        assert "WALLET_KEK_FILE cannot be read" in result.stderr

    def test_starts_with_a_kek(self):
        result = _start_in_production({"WALLET_KEK": kek_env((1, TEST_KEK_V1))})

        assert result.returncode == 0, result.stderr[-2000:]
        assert "started" in result.stdout
        assert base64.b64encode(TEST_KEK_V1).decode() not in result.stdout + result.stderr


@pytest.mark.django_db
class TestSealing:
    def test_stores_only_ciphertext_tagged_with_its_version(self, deposit_seeds, leak_watch):
        secret = KeySecret.objects.get(id=deposit_seeds["ETH"].id)
        stored = bytes(secret.ciphertext)

        assert secret.key_version == 1
        assert secret.kind == SecretKind.HD_SEED
        assert len(stored) == 12 + 64 + 16  # nonce, 64-byte BIP39 seed, GCM tag
        assert not leak_watch.hits(stored.hex())
        assert not leak_watch.hits(stored.decode("latin-1"))

    def test_a_ciphertext_moved_to_another_row_does_not_decrypt(self, deposit_seeds):
        eth, tron = KeySecret.objects.get(chain_id="ETH"), KeySecret.objects.get(chain_id="TRON")
        KeySecret.objects.filter(id=tron.id).update(ciphertext=bytes(eth.ciphertext))

        report = signer.secrets_verify()

        assert report.failed_ids == [tron.id]
        assert report.ok is False

    def test_a_relabelled_row_does_not_decrypt(self, deposit_seeds):
        eth = deposit_seeds["ETH"]
        KeySecret.objects.filter(id=eth.id).update(purpose=AddressType.HOT)

        assert signer.secrets_verify().failed_ids == [eth.id]

    def test_a_flipped_bit_does_not_decrypt(self, deposit_seeds):
        btc = KeySecret.objects.get(chain_id="BTC")
        tampered = bytearray(btc.ciphertext)
        tampered[20] ^= 1
        KeySecret.objects.filter(id=btc.id).update(ciphertext=bytes(tampered))

        assert signer.secrets_verify().failed_ids == [btc.id]

    def test_refuses_a_second_seed_for_the_same_chain_and_purpose(self, deposit_seeds):
        with pytest.raises(signer.VaultEntryExists):
            signer.hd_wallet_create(chain_id="ETH", purpose=AddressType.USER_DEPOSIT, mnemonic=TEST_MNEMONIC_DEPOSIT)

    def test_refuses_an_invalid_mnemonic_without_echoing_it(self, db):
        words = "test only " * 6

        with pytest.raises(signer.InvalidSecret) as caught:
            signer.hd_wallet_create(chain_id="ETH", purpose=AddressType.USER_DEPOSIT, mnemonic=words)

        assert "test only" not in caught.value.message


def _many_secrets(leak_watch) -> list[int]:
    # Imported keys make cheap vault entries; together with the three seeds, 9 entries.
    ids = []
    for n in range(6):
        key = bytes([n + 1]) * 32  # TEST-ONLY throwaway keys
        leak_watch.add(f"imported key {n}", key)
        ids.append(
            signer.private_key_import(chain_id="ETH", private_key_hex=key.hex(), wallet_type="test").key_secret_id
        )
    return ids


class _Crash(Exception):
    pass


@pytest.mark.django_db
class TestRotation:
    def test_re_encrypts_everything_and_every_secret_still_decrypts(self, deposit_seeds, leak_watch, monkeypatch):
        _many_secrets(leak_watch)
        before = {s.id: bytes(s.ciphertext) for s in KeySecret.objects.all()}
        monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1), (2, TEST_KEK_V2)))

        rotated = signer.secrets_rotate(to_version=2)

        after = {s.id: (s.key_version, bytes(s.ciphertext)) for s in KeySecret.objects.all()}
        assert rotated == 9
        assert all(version == 2 and after[i][1] != before[i] for i, (version, _) in after.items())
        report = signer.secrets_verify()
        assert report.ok is True and report.by_version == {2: 9}
        # Version 1 can now be retired: only the new KEK is needed.
        monkeypatch.setenv("WALLET_KEK", kek_env((2, TEST_KEK_V2)))
        assert signer.secrets_verify().ok is True

    def test_resumes_after_a_crash_in_the_middle(self, deposit_seeds, leak_watch, monkeypatch):
        _many_secrets(leak_watch)
        monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1), (2, TEST_KEK_V2)))
        done = []

        def crash_after_four(step: int) -> None:
            done.append(step)
            if len(done) == 4:
                raise _Crash  # the process dies between two entries

        with pytest.raises(_Crash):
            signer.secrets_rotate(to_version=2, progress=crash_after_four)

        halfway = signer.secrets_verify()
        assert halfway.ok is True
        assert halfway.by_version == {1: 5, 2: 4}

        rerun = signer.secrets_rotate(to_version=2)

        assert rerun == 5
        final = signer.secrets_verify()
        assert final.ok is True and final.by_version == {2: 9}

    def test_the_command_rotates_verifies_and_reports(self, deposit_seeds, monkeypatch, leak_watch):
        monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1), (2, TEST_KEK_V2)))
        out, err = io.StringIO(), io.StringIO()

        call_command("rotate_keys", "--to-version", "2", stdout=out, stderr=err)

        assert "Re-encrypted 3 entries" in out.getvalue()
        assert "Every secret decrypts" in out.getvalue()
        assert set(KeySecret.objects.values_list("key_version", flat=True)) == {2}
        leak_watch.texts += [out.getvalue(), err.getvalue()]

    def test_the_command_fails_when_a_secret_does_not_decrypt(self, deposit_seeds, monkeypatch):
        monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1), (2, TEST_KEK_V2)))
        call_command("rotate_keys", "--to-version", "2", "--no-progress", stdout=io.StringIO())
        btc = KeySecret.objects.get(chain_id="BTC")
        KeySecret.objects.filter(id=btc.id).update(ciphertext=b"\0" * 92)

        with pytest.raises(CommandError, match=str(btc.id)):
            call_command("rotate_keys", "--to-version", "2", "--no-progress", stdout=io.StringIO())

    def test_refuses_a_version_whose_kek_is_not_loaded(self, deposit_seeds):
        with pytest.raises(ImproperlyConfigured, match="version 2"):
            signer.secrets_rotate(to_version=2)

        assert set(KeySecret.objects.values_list("key_version", flat=True)) == {1}


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_rotation_commits_entry_by_entry_on_mariadb(deposit_seeds, leak_watch, monkeypatch):
    # With real transactions: the entries rotated before the crash are committed, the rest untouched.
    _many_secrets(leak_watch)
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1), (2, TEST_KEK_V2)))
    seen = []

    def crash_after_two(step: int) -> None:
        seen.append(step)
        if len(seen) == 2:
            raise _Crash

    with pytest.raises(_Crash):
        signer.secrets_rotate(to_version=2, progress=crash_after_two)
    assert sorted(KeySecret.objects.values_list("key_version", flat=True)) == [1] * 7 + [2] * 2

    call_command("rotate_keys", "--to-version", "2", "--no-progress", stdout=io.StringIO())

    assert signer.secrets_verify().by_version == {2: 9}
