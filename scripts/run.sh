#!/usr/bin/env bash
# Start the whole service on this machine: web (gunicorn, port 8083), Celery worker and beat,
# the event relay, and the local dev chains. With no configuration it runs on embedded defaults
# (SQLite, a filesystem broker under var/, local cache). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bootstrap_python run
bootstrap_node
PY="$VENV/bin/python"
PORT="${PORT:-8083}"
mkdir -p var/log

"$PY" manage.py migrate --noinput >var/log/migrate.log
"$PY" manage.py collectstatic --noinput >/dev/null

pids=()
stop_all() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all INT TERM EXIT

start() {  # name, command...
    local name="$1"; shift
    "$@" >>"var/log/$name.log" 2>&1 &
    pids+=($!)
    echo "started $name (pid $!, log var/log/$name.log)"
}

if [ -f chains/devnodes.py ] && [ "${WALLET_DEV_CHAINS:-1}" = 1 ]; then
    start devchains "$PY" -m chains.devnodes serve
fi
[ -f var/.beat-schedules ] || { "$PY" manage.py help setup_beat_schedules >/dev/null 2>&1 \
    && "$PY" manage.py setup_beat_schedules >/dev/null && touch var/.beat-schedules || true; }
start worker "$VENV/bin/celery" -A wallet_project worker --loglevel=INFO --concurrency=2 -Q celery,scanner
start beat "$VENV/bin/celery" -A wallet_project beat --loglevel=INFO
if "$PY" manage.py help relay_events >/dev/null 2>&1; then
    start relay "$PY" manage.py relay_events
fi
start web "$VENV/bin/gunicorn" wallet_project.wsgi --bind "127.0.0.1:$PORT" --workers 2 --threads 4 \
    --access-logfile - --timeout 30

for _ in $(seq 1 60); do
    if curl -fsS "http://127.0.0.1:$PORT/api/v1/wallet/health" >/dev/null 2>&1; then break; fi
    sleep 1
done
echo
curl -sS "http://127.0.0.1:$PORT/api/v1/wallet/health"; echo
"$PY" manage.py demo_setup --base-url "http://127.0.0.1:$PORT"
echo "API docs: http://127.0.0.1:$PORT/api/docs   metrics: http://127.0.0.1:$PORT/metrics"
echo "Press Ctrl-C to stop."
wait -n "${pids[@]}"
echo "a process exited; stopping the others (see var/log/)" >&2
exit 1
