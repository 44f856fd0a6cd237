"""Derivation vectors: BIP32 test vector 1, and our coincurve derivation against bitcoinlib, eth-account and tronpy."""

from __future__ import annotations

import pytest
from bitcoinlib.keys import HDKey
from eth_account import Account
from eth_account.hdaccount.mnemonic import Mnemonic
from tronpy.keys import PrivateKey as TronPrivateKey

from addresses import hd
from addresses.tests.conftest import TEST_MNEMONIC_DEPOSIT, TEST_MNEMONIC_HOT

Account.enable_unaudited_hdwallet_features()

# BIP32 test vector 1, copied from the BIP: seed and (path, xpub, xprv) for each step of the chain.
BIP32_SEED_1 = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
BIP32_VECTOR_1 = [
    (
        "m",
        "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
        "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
    ),
    (
        "m/0'",
        "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
        "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
    ),
    (
        "m/0'/1",
        "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
        "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs",
    ),
    (
        "m/0'/1/2'",
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
        "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
    ),
    (
        "m/0'/1/2'/2",
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
        "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334",
    ),
    (
        "m/0'/1/2'/2/1000000000",
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
        "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76",
    ),
]

INDEXES = [0, 1, 2, 7, 19]


class TestBip32:
    @pytest.mark.parametrize(("path", "xpub", "xprv"), BIP32_VECTOR_1)
    def test_derives_test_vector_1_of_the_bip(self, path, xpub, xprv):
        node = hd.ExtendedKey.from_seed(BIP32_SEED_1).derive(path)

        assert node.xprv() == xprv
        assert node.xpub() == xpub

    def test_public_derivation_from_an_xpub_equals_private_derivation(self):
        account = hd.ExtendedKey.from_seed(BIP32_SEED_1).derive("m/0'")

        from_xpub = hd.ExtendedKey.from_xpub(account.neuter().xpub()).derive("m/1/2")

        assert from_xpub.public_key == account.derive("m/1/2").public_key
        assert from_xpub.xpub() == account.derive("m/1/2").neuter().xpub()

    def test_refuses_a_hardened_child_of_a_public_key(self):
        public = hd.ExtendedKey.from_seed(BIP32_SEED_1).neuter()

        with pytest.raises(hd.DerivationError):
            public.derive("m/0'")

    @pytest.mark.parametrize("path", ["44'/0", "m/x", "m/2147483648", "m//1"])
    def test_refuses_a_malformed_path(self, path):
        with pytest.raises(hd.DerivationError):
            hd.path_parse(path)

    def test_never_shows_the_private_key_in_its_repr(self):
        node = hd.ExtendedKey.from_seed(BIP32_SEED_1)

        assert node.private_key.hex() not in repr(node)
        assert node.chain_code.hex() not in repr(node)


def _account_xpub(seed: bytes, chain_id: str) -> str:
    return hd.ExtendedKey.from_seed(seed).derive(hd.account_path(chain_id)).neuter().xpub()


@pytest.mark.parametrize("mnemonic", [TEST_MNEMONIC_DEPOSIT, TEST_MNEMONIC_HOT])
class TestAgainstTheLibraries:
    def test_eth_addresses_equal_eth_accounts(self, mnemonic):
        seed = Mnemonic.to_seed(mnemonic)

        fast = dict(hd.addresses_derive("ETH", _account_xpub(seed, "ETH"), 0, 20))

        for i in INDEXES:
            expected = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}").address
            assert fast[i] == expected
            assert hd.address_path("ETH", i) == f"m/44'/60'/0'/0/{i}"

    def test_tron_addresses_equal_tronpys(self, mnemonic):
        seed = Mnemonic.to_seed(mnemonic)
        root = hd.ExtendedKey.from_seed(seed)

        fast = dict(hd.addresses_derive("TRON", _account_xpub(seed, "TRON"), 0, 20))

        for i in INDEXES:
            key = root.derive(f"m/44'/195'/0'/0/{i}").private_key
            assert fast[i] == TronPrivateKey(key).public_key.to_base58check_address()
            assert fast[i].startswith("T")

    @pytest.mark.parametrize(
        ("network", "bcl_network", "coin_type"),
        [("mainnet", "bitcoin", 0), ("testnet", "testnet", 1), ("regtest", "regtest", 1)],
    )
    def test_btc_addresses_equal_bitcoinlibs(self, mnemonic, settings, network, bcl_network, coin_type):
        settings.BTC_NETWORK = network
        seed = Mnemonic.to_seed(mnemonic)
        library_root = HDKey.from_seed(seed, network=bcl_network, witness_type="segwit")

        fast = dict(hd.addresses_derive("BTC", _account_xpub(seed, "BTC"), 0, 20))

        for i in INDEXES:
            expected = library_root.subkey_for_path(f"m/84'/{coin_type}'/0'/0/{i}").address()
            assert fast[i] == expected
            assert hd.address_path("BTC", i) == f"m/84'/{coin_type}'/0'/0/{i}"

    def test_fast_path_equals_the_plain_bip32_path(self, mnemonic):
        seed = Mnemonic.to_seed(mnemonic)
        root = hd.ExtendedKey.from_seed(seed)

        for chain_id in hd.CHAINS:
            fast = dict(hd.addresses_derive(chain_id, _account_xpub(seed, chain_id), 5, 3))
            for i in (5, 6, 7):
                plain = hd.address_from_public_key(chain_id, root.derive(hd.address_path(chain_id, i)).public_key)
                assert fast[i] == plain


class TestBtcPrefixes:
    def test_bip84_reference_address(self, settings):
        # BIP84's own test vector: the first receive address of the "abandon ... about" mnemonic.
        settings.BTC_NETWORK = "mainnet"
        seed = Mnemonic.to_seed(TEST_MNEMONIC_DEPOSIT)

        (first,) = hd.addresses_derive("BTC", _account_xpub(seed, "BTC"), 0, 1)

        assert first == (0, "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu")

    def test_regtest_prefix_is_configurable_for_bcoin(self, settings):
        seed = Mnemonic.to_seed(TEST_MNEMONIC_DEPOSIT)
        settings.BTC_REGTEST_HRP = "bcrt"
        (_, core) = next(hd.addresses_derive("BTC", _account_xpub(seed, "BTC"), 0, 1))
        settings.BTC_REGTEST_HRP = "rb"

        (_, bcoin) = next(hd.addresses_derive("BTC", _account_xpub(seed, "BTC"), 0, 1))

        assert core.startswith("bcrt1q")
        assert bcoin.startswith("rb1q")
        assert core.removeprefix("bcrt1")[:-6] == bcoin.removeprefix("rb1")[:-6]  # same witness program
