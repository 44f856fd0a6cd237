"""Compile contracts/*.sol with solc-js (offline) into contracts/build/contracts.json."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chains.contracts import ARTIFACTS_FILE, contracts_compile, contracts_write

if __name__ == "__main__":
    contracts_write(contracts_compile())
    print(f"wrote {ARTIFACTS_FILE}")
