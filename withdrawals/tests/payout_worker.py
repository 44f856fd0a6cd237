"""
A payout worker process for the kill -9 tests: runs pay + confirm rounds on the EVM node at
ETH_RPC_URL (mining a block after each, as time would), and SIGKILLs itself at the chosen step.

    python -m withdrawals.tests.payout_worker STEP
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")
    django.setup()
    from chains import registry as chains_registry
    from withdrawals import payout as withdrawals_payout

    step = sys.argv[1]

    def die(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill -9: no cleanup, no rollback handler

    withdrawals_payout.fault_hook = die
    adapter = chains_registry.adapter_for("ETH")
    for _ in range(6):
        withdrawals_payout.withdrawals_pay(chain_id="ETH")
        withdrawals_payout.withdrawals_confirm(chain_id="ETH")
        adapter.node.call("evm_mine")  # type: ignore[attr-defined]
    sys.exit(3)  # never reached the step


if __name__ == "__main__":
    main()
