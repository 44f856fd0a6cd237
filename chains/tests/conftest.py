from chains.testing import btc_adapter, btc_node, evm_adapter, evm_node, tron_adapter, tron_node  # noqa: F401
