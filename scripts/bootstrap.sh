# Shared setup of scripts/run.sh and scripts/test.sh: a virtualenv with the pinned packages and
# the chain dev nodes from the npm registry. Idempotent: a second run installs nothing.
VENV="${WALLET_VENV:-.venv}"
export BCL_DATA_DIR="${BCL_DATA_DIR:-$PWD/var/bitcoinlib}"

_have_mysql_headers() {
    command -v mysql_config >/dev/null 2>&1 || pkg-config --exists mysqlclient 2>/dev/null \
        || pkg-config --exists libmariadb 2>/dev/null
}

bootstrap_python() {
    local profile="$1"  # run or dev
    local req="requirements.txt"
    [ "$profile" = dev ] && req="requirements-dev.txt"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip
    fi
    local stamp="$VENV/.installed-$profile"
    local want
    want=$(cat requirements*.txt | sha256sum | cut -c1-16)
    # The dev profile installs everything the run profile does (requirements-dev.txt includes it).
    if [ "$profile" = run ] && [ "$(cat "$VENV/.installed-dev" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        "$VENV/bin/pip" install -q -r "$req" 2> >(grep -v "is ignored: it is neither" >&2)
        # The MySQL driver compiles against the client headers; without them the service runs
        # on SQLite (the embedded default) and MySQL is not needed.
        if _have_mysql_headers; then
            "$VENV/bin/pip" install -q -r requirements-mysql.txt 2> >(grep -v "is ignored: it is neither" >&2)
        elif [[ "${DATABASE_URL:-}" == mysql* ]]; then
            echo "DATABASE_URL is MySQL but the MySQL client headers are missing:" >&2
            echo "  apt-get install default-libmysqlclient-dev pkg-config build-essential python3-dev" >&2
            exit 1
        fi
        echo "$want" > "$stamp"
    fi
}

bootstrap_node() {
    # Chain dev nodes (EVM, Bitcoin regtest) and the Solidity compiler, from the npm registry.
    if [ -f package.json ]; then
        local want
        want=$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
        if [ "$(cat node_modules/.installed 2>/dev/null)" != "$want" ]; then
            bash scripts/npm-install.sh
            echo "$want" > node_modules/.installed
        fi
    fi
}
