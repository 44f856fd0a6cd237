"""
The test contracts (contracts/*.sol): compiled with solc-js, offline, for the EVM dev node.

The compiled ABI and bytecode are committed in contracts/build/contracts.json, written by
`python scripts/compile_contracts.py`; a test recompiles and checks the file matches.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = BASE_DIR / "contracts"
ARTIFACTS_FILE = CONTRACTS_DIR / "build" / "contracts.json"
SOLCJS = BASE_DIR / "node_modules" / ".bin" / "solcjs"
# ganache 7.9.2 runs shanghai; solc's newer default target emits opcodes it rejects.
EVM_VERSION = "shanghai"
SOURCES = ("TestToken.sol", "PayoutTargets.sol")


class CompileError(Exception):
    """solc-js is missing or reported an error."""


def contracts_compile() -> dict[str, dict[str, Any]]:
    """Compile the Solidity sources with solc-js and return {contract name: {abi, bytecode}}.

    :raises CompileError: solc-js is not installed (run scripts/npm-install.sh) or the source is wrong.
    """
    if not SOLCJS.exists():
        raise CompileError(f"{SOLCJS} is missing: run scripts/npm-install.sh")
    request = {
        "language": "Solidity",
        "sources": {name: {"content": (CONTRACTS_DIR / name).read_text()} for name in SOURCES},
        "settings": {
            "evmVersion": EVM_VERSION,
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    done = subprocess.run(  # noqa: S603 - fixed local binary, no shell
        [str(SOLCJS), "--standard-json"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # solcjs prints ">>> Cannot retry compilation with SMT ..." lines before its JSON.
    text = "\n".join(line for line in done.stdout.splitlines() if not line.startswith(">>>"))
    try:
        output = json.loads(text)
    except ValueError:
        raise CompileError(f"solcjs exited {done.returncode} without JSON output") from None
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("; ".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    artifacts: dict[str, dict[str, Any]] = {}
    for source in SOURCES:
        for name, compiled in sorted(output["contracts"][source].items()):
            bytecode = compiled["evm"]["bytecode"]["object"]
            if bytecode:  # interfaces have none
                artifacts[name] = {"abi": compiled["abi"], "bytecode": "0x" + bytecode}
    return artifacts


def contracts_write(artifacts: dict[str, dict[str, Any]]) -> None:
    """Write the compiled artifacts to contracts/build/contracts.json."""
    ARTIFACTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACTS_FILE.write_text(json.dumps(artifacts, indent=1, sort_keys=True) + "\n")


@cache
def artifact(name: str) -> dict[str, Any]:
    """Return {abi, bytecode} of a compiled test contract (TestToken, BlockableToken, BatchSender,
    GasHungryWallet, FalseReturningToken)."""
    return json.loads(ARTIFACTS_FILE.read_text())[name]
