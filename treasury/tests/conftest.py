from addresses.tests.conftest import _no_secret_leaks, hot_seeds, leak_watch, seeded_coins, test_kek  # noqa: F401
from chains.testing import evm_adapter, evm_node, tron_adapter, tron_node  # noqa: F401
