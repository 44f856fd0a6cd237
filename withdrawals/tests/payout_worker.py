"""
A payout worker process for the kill -9 tests: runs pay + confirm rounds on one chain's dev node
(mining a block after each, as time would), and SIGKILLs itself at the chosen step.

    python -m withdrawals.tests.payout_worker STEP                 # EVM node at ETH_RPC_URL
    python -m withdrawals.tests.payout_worker STEP BTC MINER_ADDR  # bcoin at BTC_RPC_URL

PAYOUT_KILL_NTH=N in the environment: at the step's Nth occurrence (default the first).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")
    django.setup()
    from chains import registry as chains_registry
    from wallet_project.testing import kill_at
    from withdrawals import payout as withdrawals_payout

    step = sys.argv[1]
    chain_id = sys.argv[2] if len(sys.argv) > 2 else "ETH"

    # PAYOUT_KILL_NTH: die at the step's nth occurrence (several withdrawals in one run).
    withdrawals_payout.fault_hook = kill_at(step, nth=int(os.environ.get("PAYOUT_KILL_NTH", "1")))
    adapter = chains_registry.adapter_for(chain_id)
    for _ in range(6):
        withdrawals_payout.withdrawals_pay(chain_id=chain_id)
        withdrawals_payout.withdrawals_confirm(chain_id=chain_id)
        if chain_id == "BTC":
            adapter.node.call("generatetoaddress", [1, sys.argv[3]])  # type: ignore[attr-defined]
        else:
            adapter.node.call("evm_mine")  # type: ignore[attr-defined]
    sys.exit(3)  # never reached the step


if __name__ == "__main__":
    main()
