"""
A deposit scanner worker process for the kill -9 tests: runs scan + confirm ticks on a chain
read from a JSON file, and SIGKILLs itself when it reaches the chosen step.

    python -m recharges.tests.scan_worker CHAIN_JSON STEP
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")
    django.setup()
    from chains.base import Block, Transfer
    from recharges import services as recharges_services
    from recharges.tests.fakechain import FakeChain
    from recharges.tests.helpers import tick
    from wallet_project.testing import kill_at

    chain_file, step = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(chain_file).read_text())
    chain = FakeChain(spec["chain_id"])
    chain.mined = [
        Block(
            number=b["number"],
            hash=b["hash"],
            parent_hash=b["parent_hash"],
            timestamp=b["timestamp"],
            transfers=[Transfer(**t) for t in b["transfers"]],
        )
        for b in spec["blocks"]
    ]

    recharges_services.fault_hook = kill_at(step)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for _ in range(10):
        tick(chain, now)
    sys.exit(3)  # never reached the step


if __name__ == "__main__":
    main()
