#!/usr/bin/env bash
# Start the whole service on this machine: the local dev chains (ganache, bcoin regtest, the TRON
# fake; a block every few seconds, kept under var/devchain/), hot wallets created and funded on
# them, then the Celery worker and beat, the event relay and the web process (port 8083).
# With no configuration it runs on embedded defaults (SQLite, a filesystem broker under var/, local
# cache). Ctrl-C stops everything; the next run continues where this one stopped.
#
# Ports: PORT (web, 8083), DEVCHAIN_EVM_PORT (8545), DEVCHAIN_TRON_PORT (8090), DEVCHAIN_BTC_PORT
# (18443). DEVCHAIN_BLOCK_SECONDS: seconds between two blocks of each dev chain (2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bootstrap_python run
bootstrap_node
PY="$VENV/bin/python"
PORT="${PORT:-8083}"
BASE_URL="http://127.0.0.1:$PORT"
DEV_CHAINS="${WALLET_DEV_CHAINS:-1}"
VAR="${WALLET_VAR_DIR:-var}"
mkdir -p "$VAR/log"

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ports=("$PORT")
if [ "$DEV_CHAINS" = 1 ]; then
    EVM_PORT="${DEVCHAIN_EVM_PORT:-8545}"
    TRON_PORT="${DEVCHAIN_TRON_PORT:-8090}"
    BTC_PORT="${DEVCHAIN_BTC_PORT:-18443}"
    ports+=("$EVM_PORT" "$TRON_PORT" "$BTC_PORT")
    # Every process talks to the dev chains started below.
    export ETH_RPC_URL="${ETH_RPC_URL:-http://127.0.0.1:$EVM_PORT/}"
    export TRON_API_URL="${TRON_API_URL:-http://127.0.0.1:$TRON_PORT/}"
    export BTC_RPC_URL="${BTC_RPC_URL:-http://wallet:devchain-only-api-key@127.0.0.1:$BTC_PORT/}"
    # Dev chains are young and small: scan them from their first block, and often.
    export SCAN_START_HEIGHTS="${SCAN_START_HEIGHTS:-BTC:0,ETH:0,TRON:0}"
    export SCAN_INTERVAL_SECONDS="${SCAN_INTERVAL_SECONDS:-5}"
    # A demo has few withdrawals: a BTC one waits 10 s (not 60) for others to share its transaction.
    export WITHDRAW_BTC_BATCH_WAIT_SECONDS="${WITHDRAW_BTC_BATCH_WAIT_SECONDS:-10}"
fi
for port in "${ports[@]}"; do
    if port_taken "$port"; then
        echo "port $port is already in use (another run still going?): stop it, or set PORT / DEVCHAIN_*_PORT" >&2
        exit 1
    fi
done

"$PY" manage.py migrate --noinput >"$VAR/log/migrate.log"
"$PY" manage.py collectstatic --noinput >/dev/null
# Every start: a changed SCAN_INTERVAL_SECONDS (or chain list) takes effect.
"$PY" manage.py setup_beat_schedules >"$VAR/log/beat-schedules.log"

pids=()
chain_pids=()
stop() {  # pids...: SIGTERM, then SIGKILL what is still there after 30 s
    kill "$@" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$@" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -9 "$@" 2>/dev/null || true
}
stop_all() {
    trap - INT TERM EXIT
    # The service first, the dev chains last: a task still running must not find its node gone.
    for pid in "${pids[@]}"; do stop "$pid"; done
    for pid in "${chain_pids[@]}"; do stop "$pid"; done
    wait 2>/dev/null || true
}
trap 'echo; echo "stopping..."; stop_all; exit 0' INT TERM
trap stop_all EXIT

start() {  # name, command...
    local name="$1"; shift
    "$@" >>"$VAR/log/$name.log" 2>&1 &
    pids+=($!)
    echo "started $name (pid $!, log $VAR/log/$name.log)"
}

if [ "$DEV_CHAINS" = 1 ]; then
    ready="${DEVCHAIN_FILE:-$VAR/devchain.json}"
    ready="${ready%.json}.ready"
    rm -f "$ready"
    # Started in the background, it ignores the terminal's Ctrl-C: stop_all stops it after the rest.
    start devchains "$PY" -m chains.devnodes serve \
        --evm-port "$EVM_PORT" --tron-port "$TRON_PORT" --btc-port "$BTC_PORT"
    chain_pids=("${pids[@]}")
    pids=()
    # The worker starts once the chains answer: its first ticks must not find them starting.
    echo -n "waiting for the dev chains"
    for _ in $(seq 1 180); do
        [ -f "$ready" ] && break
        if ! kill -0 "${chain_pids[0]}" 2>/dev/null; then
            echo; echo "the dev chains did not start; the end of $VAR/log/devchains.log:" >&2
            tail -n 20 "$VAR/log/devchains.log" >&2
            exit 1
        fi
        echo -n "."
        sleep 1
    done
    echo
    [ -f "$ready" ] || { echo "the dev chains are not ready after 180 s: see $VAR/log/devchains.log" >&2; exit 1; }
fi

setup_text="$VAR/log/demo_setup.txt"
if [ "${WALLET_ENV:-development}" != production ]; then
    funding=()
    [ "$DEV_CHAINS" = 1 ] || funding=(--no-funding)
    echo "setting up the demo users and the hot wallets (funding them on the dev chains)..."
    "$PY" manage.py demo_setup --base-url "$BASE_URL" "${funding[@]}" >"$setup_text"
fi

start worker "$VENV/bin/celery" -A wallet_project worker --loglevel=INFO --concurrency=2 -Q celery,scanner
start beat "$VENV/bin/celery" -A wallet_project beat --loglevel=INFO
start relay "$PY" manage.py relay_events
start web "$VENV/bin/gunicorn" wallet_project.wsgi --bind "127.0.0.1:$PORT" --workers 2 --threads 4 \
    --access-logfile - --timeout 30

for _ in $(seq 1 60); do
    if curl -fsS "$BASE_URL/api/v1/wallet/health" >/dev/null 2>&1; then break; fi
    sleep 1
done
echo
echo "health: $(curl -sS "$BASE_URL/api/v1/wallet/health")"
if [ "$DEV_CHAINS" = 1 ]; then
    echo "Dev chains: a block every ${DEVCHAIN_BLOCK_SECONDS:-2} s on ETH (ganache :$EVM_PORT), TRON (fake :$TRON_PORT)" \
        "and BTC (bcoin regtest :$BTC_PORT); kept in $VAR/devchain/."
fi
[ -f "$setup_text" ] && cat "$setup_text"
echo "Metrics: $BASE_URL/metrics   logs: $VAR/log/"
echo "Press Ctrl-C to stop (the next run continues where this one stopped)."
set +e
wait -n "${chain_pids[@]}" "${pids[@]}"
echo "a process exited; stopping the others (see $VAR/log/)" >&2
exit 1
