"""
A treasury worker process for the kill -9 tests: runs send + confirm rounds on the EVM node at
ETH_RPC_URL (mining a block after each), and SIGKILLs itself at the chosen step.

    python -m treasury.tests.transfer_worker STEP
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")
    django.setup()
    from chains import registry as chains_registry
    from treasury import sending
    from wallet_project.testing import kill_at

    step = sys.argv[1]

    sending.fault_hook = kill_at(step)
    adapter = chains_registry.adapter_for("ETH")
    for _ in range(6):
        sending.treasury_send(chain_id="ETH", adapter=adapter)
        adapter.node.call("evm_mine")  # type: ignore[attr-defined]
        sending.treasury_confirm(chain_id="ETH", adapter=adapter)
    sys.exit(3)  # never reached the step


if __name__ == "__main__":
    main()
