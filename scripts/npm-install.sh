#!/usr/bin/env bash
# Install the npm packages of package.json offline-safe (no download at run time afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
npm install --ignore-scripts --no-audit --no-fund --loglevel=error
# Native parts (bcoin's leveldown) build against the local Node headers.
npm_config_nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")" \
    npm rebuild --loglevel=error >/dev/null 2>&1 || true
