#!/usr/bin/env bash
# Start the local dev chains alone (ganache 8545, TRON fake 8090, bcoin regtest 18443 by default;
# scripts/run.sh starts them with everything else): a block every DEVCHAIN_BLOCK_SECONDS (2) on
# each, chains kept under var/devchain/ across restarts, the test USDT deployed once and recorded
# in var/devchain.json and in coin_config. Runs in the foreground until Ctrl-C / SIGTERM, which
# stops every node it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bootstrap_python run
bootstrap_node
exec "$VENV/bin/python" -m chains.devnodes serve \
    --evm-port "${DEVCHAIN_EVM_PORT:-8545}" \
    --tron-port "${DEVCHAIN_TRON_PORT:-8090}" \
    --btc-port "${DEVCHAIN_BTC_PORT:-18443}" "$@"
