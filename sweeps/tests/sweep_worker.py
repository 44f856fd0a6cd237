"""
A sweep worker process for the kill -9 tests: runs sweep rounds of a chain on the dev node at
ETH_RPC_URL (mining a block after each, as time would) and SIGKILLs itself at the chosen step.

    python -m sweeps.tests.sweep_worker STEP
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")
    django.setup()
    from chains import registry as chains_registry
    from sweeps import common as sweeps_common
    from sweeps import services as sweeps_services
    from wallet_project.testing import kill_at

    step = sys.argv[1]

    sweeps_common.fault_hook = kill_at(step)
    adapter = chains_registry.adapter_for("ETH")
    for _ in range(12):
        sweeps_services.sweeps_run(chain_id="ETH", adapter=adapter)
        adapter.node.call("evm_mine")  # type: ignore[attr-defined]
    sys.exit(3)  # never reached the step


if __name__ == "__main__":
    main()
