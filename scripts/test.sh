#!/usr/bin/env bash
# Run every test. With no configuration it runs on SQLite and the local-memory cache;
# with DATABASE_URL / REDIS_URL / RABBITMQ_URL set (as .ci/run does) against those servers.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bootstrap_python dev
bootstrap_node
exec "$VENV/bin/python" -m pytest "$@"
