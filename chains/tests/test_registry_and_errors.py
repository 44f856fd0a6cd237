"""Adapters from settings, compiled contracts, and nodes that answer garbage."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chains import registry
from chains.base import ChainError
from chains.btc import BtcAdapter
from chains.contracts import ARTIFACTS_FILE, contracts_compile
from chains.devnodes import free_port
from chains.evm import EvmAdapter
from chains.tron import TronAdapter


class TestContracts:
    def test_committed_artifacts_match_a_fresh_solc_js_compile(self):
        assert contracts_compile() == json.loads(ARTIFACTS_FILE.read_text())


class TestRegistry:
    @pytest.fixture(autouse=True)
    def _fresh(self):
        registry.adapters_reset()
        yield
        registry.adapters_reset()

    def test_builds_each_adapter_from_settings(self, settings):
        settings.ETH_RPC_URL = "http://127.0.0.1:1111/"
        settings.BTC_RPC_URL = "http://wallet:key@127.0.0.1:2222/"
        settings.TRON_API_URL = "http://127.0.0.1:3333/"
        settings.BTC_NETWORK = "testnet"

        eth, btc, tron = (registry.adapter_for(c) for c in ("ETH", "BTC", "TRON"))

        assert isinstance(eth, EvmAdapter) and eth.node.url == "http://127.0.0.1:1111/"
        assert isinstance(btc, BtcAdapter) and btc.node.url == "http://127.0.0.1:2222/" and btc.network == "testnet"
        assert isinstance(tron, TronAdapter) and tron.node.url == "http://127.0.0.1:3333/"
        assert registry.adapter_for("ETH") is eth

    def test_refuses_an_unknown_chain(self):
        with pytest.raises(registry.UnknownChain):
            registry.adapter_for("DOGE")

    def test_defaults_point_at_the_dev_chain_ports(self):
        from django.conf import settings

        assert settings.ETH_RPC_URL.endswith(":8545/")
        assert settings.BTC_RPC_URL.endswith(":18443/")
        assert settings.TRON_API_URL.endswith(":8090/")


class _Garbage(BaseHTTPRequestHandler):
    body = b"<html>502 Bad Gateway</html>"

    def do_POST(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[b"<html>502 Bad Gateway</html>", b'{"jsonrpc": "2.0", "id": 1, "result": {"weird": 1}}'])
def garbage_url(request) -> Iterator[str]:
    handler = type("Handler", (_Garbage,), {"body": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://u:topsecret@127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class TestGarbage:
    @pytest.mark.parametrize("adapter_class", [EvmAdapter, BtcAdapter, TronAdapter])
    def test_a_node_answering_garbage_raises_chain_error(self, garbage_url, adapter_class):
        adapter = adapter_class(url=garbage_url, connect_timeout=1, read_timeout=2)

        with pytest.raises(ChainError):
            adapter.tip_height()
        with pytest.raises(ChainError):
            adapter.block(5)

    def test_errors_never_carry_the_node_password(self):
        adapter = BtcAdapter(url=f"http://wallet:topsecret@127.0.0.1:{free_port()}/", connect_timeout=0.5)

        with pytest.raises(ChainError) as caught:
            adapter.tip_height()

        assert "topsecret" not in str(caught.value)
