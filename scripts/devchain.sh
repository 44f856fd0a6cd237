#!/usr/bin/env bash
# Start the local dev chains (ganache 8545, TRON fake 8090, bcoin regtest 18443 by default),
# deploy the test USDT on EVM and TRON, record it in var/devchain.json and in coin_config.
# Runs in the foreground until Ctrl-C / SIGTERM, which stops every node it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bootstrap_python run
bootstrap_node
exec "$VENV/bin/python" -m chains.devnodes serve \
    --evm-port "${DEVCHAIN_EVM_PORT:-8545}" \
    --tron-port "${DEVCHAIN_TRON_PORT:-8090}" \
    --btc-port "${DEVCHAIN_BTC_PORT:-18443}" "$@"
