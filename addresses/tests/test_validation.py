"""address_validate: checksums, case rules and networks per chain."""

from __future__ import annotations

import pytest
from bitcoinlib.keys import Address

from addresses import selectors
from addresses.validation import InvalidAddress, address_validate
from chains.codecs import b58check_encode, segwit_encode

BIP84_MAINNET = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
BIP173_P2WSH_MAINNET = "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3"
BIP350_TAPROOT_MAINNET = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"
BIP173_TESTNET = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
P2PKH_MAINNET = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"
P2SH_MAINNET = "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"
P2PKH_TESTNET = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"
P2SH_TESTNET = "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc"
EIP55 = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]
TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def _flip_last(text: str) -> str:
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l" if "1" in text[:5] and not text[0].isupper() else "23456789ABC"
    last = text[-1]
    return text[:-1] + next(c for c in alphabet if c != last)


def _refused(chain_id: str, address: str) -> InvalidAddress:
    with pytest.raises(InvalidAddress) as caught:
        address_validate(chain_id, address)
    assert caught.value.field == "to_address"
    assert caught.value.as_body()["fields"]["to_address"]
    return caught.value


class TestBtcOnMainnet:
    @pytest.fixture(autouse=True)
    def _mainnet(self, settings):
        settings.BTC_NETWORK = "mainnet"

    @pytest.mark.parametrize(
        "address", [BIP84_MAINNET, BIP173_P2WSH_MAINNET, BIP350_TAPROOT_MAINNET, P2PKH_MAINNET, P2SH_MAINNET]
    )
    def test_accepts_mainnet_addresses(self, address):
        assert address_validate("BTC", address) == address

    def test_accepts_upper_case_bech32_and_returns_lower_case(self):
        assert address_validate("BTC", BIP84_MAINNET.upper()) == BIP84_MAINNET

    @pytest.mark.parametrize(
        "address", [BIP173_TESTNET, P2PKH_TESTNET, P2SH_TESTNET, "bcrt1qcr8te4kr609gcawutmrza0j4xv80jy8zk9u6yd"]
    )
    def test_refuses_other_networks(self, address):
        error = _refused("BTC", address)
        assert "another network" in error.message or "checksum" in error.message

    def test_refuses_a_testnet_bech32_address_as_another_network(self):
        assert "another network" in _refused("BTC", BIP173_TESTNET).message

    @pytest.mark.parametrize("address", [BIP84_MAINNET, BIP350_TAPROOT_MAINNET, P2PKH_MAINNET, P2SH_MAINNET])
    def test_refuses_a_bad_checksum(self, address):
        _refused("BTC", _flip_last(address))

    def test_refuses_mixed_case_bech32(self):
        _refused("BTC", BIP84_MAINNET[:10] + BIP84_MAINNET[10:].upper())

    @pytest.mark.parametrize(
        "address",
        [
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # v1 under bech32
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # v0 under bech32m
        ],
    )
    def test_refuses_the_wrong_checksum_variant_per_bip350(self, address):
        # BIP350's invalid vectors: the checksum is valid, but of the other variant.
        _refused("BTC", address)

    def test_agrees_with_bitcoinlib_on_a_p2wpkh_address(self):
        ours = segwit_encode("bc", 0, bytes(range(20)))

        assert Address.parse(ours).address == address_validate("BTC", ours)


class TestBtcOnRegtest:
    def test_accepts_the_configured_regtest_prefix_only(self, settings):
        settings.BTC_NETWORK = "regtest"
        settings.BTC_REGTEST_HRP = "rb"
        bcoin = segwit_encode("rb", 0, bytes(range(20)))

        assert address_validate("BTC", bcoin) == bcoin
        _refused("BTC", segwit_encode("bcrt", 0, bytes(range(20))))
        _refused("BTC", BIP84_MAINNET)
        assert address_validate("BTC", P2PKH_TESTNET) == P2PKH_TESTNET


class TestEth:
    @pytest.mark.parametrize("address", EIP55)
    def test_accepts_checksummed_addresses(self, address):
        assert address_validate("ETH", address) == address

    @pytest.mark.parametrize("address", EIP55)
    def test_accepts_all_lower_or_all_upper_and_returns_the_checksum_form(self, address):
        assert address_validate("ETH", address.lower()) == address
        assert address_validate("ETH", "0x" + address[2:].upper()) == address

    @pytest.mark.parametrize("address", EIP55)
    def test_refuses_mixed_case_that_breaks_the_checksum(self, address):
        i = next(i for i, c in enumerate(address[2:], 2) if c.isalpha())
        broken = address[:i] + address[i].swapcase() + address[i + 1 :]

        assert "EIP-55" in _refused("ETH", broken).message

    @pytest.mark.parametrize(
        "address",
        ["0x123", "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00", "0xZZAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "", "  "],
    )
    def test_refuses_malformed_addresses(self, address):
        _refused("ETH", address)


class TestTron:
    def test_accepts_a_tron_address(self):
        assert address_validate("TRON", TRON_USDT) == TRON_USDT

    def test_refuses_a_bad_checksum(self):
        _refused("TRON", TRON_USDT[:-1] + ("u" if TRON_USDT[-1] != "u" else "v"))

    def test_refuses_base58check_with_another_version_byte(self):
        _refused("TRON", P2PKH_MAINNET)
        _refused("TRON", b58check_encode(b"\x42" + bytes(20)))

    def test_refuses_an_eth_address(self):
        _refused("TRON", EIP55[0])


def test_refuses_an_unknown_chain():
    with pytest.raises(InvalidAddress):
        address_validate("DOGE", P2PKH_MAINNET)


def test_selectors_expose_the_same_function():
    assert selectors.address_validate is address_validate
