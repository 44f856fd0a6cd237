from chains.testing import evm_adapter, evm_node, tron_adapter, tron_node  # noqa: F401
