#!/usr/bin/env bash
# The emulators the tests run against, on loopback only, without Docker:
#   - moto_server (PyPI moto[server]): DynamoDB and SQS over their real protocols
#   - redis-server (Debian): the rate limiter's Redis
# and schemathesis (PyPI, in infra/.venv-schemathesis), which the API contract test runs
# against the local runner, and the browser the inbox page is walked in: Debian's chromium,
# driven by playwright-core (npm, pinned by tests/browser/package-lock.json).
#
#   bash infra/emulators.sh install   # idempotent: venv at infra/.venv (moto, cfn-lint),
#                                     # redis-server from Debian if missing (needs root)
#   eval "$(bash infra/emulators.sh start)"   # prints `export MOTO_ENDPOINT=... REDIS_URL=...`
#   bash infra/emulators.sh env       # prints the exports of the running emulators again
#   bash infra/emulators.sh stop      # kills only the PIDs `start` recorded
#   bash infra/emulators.sh schemathesis   # prints the schemathesis executable's path
#   bash infra/emulators.sh chromium       # prints the browser's path
#
# Environment:
#   MOTO_PORT   moto's port  (default 5055; if unset and 5055 is taken, a free port is used)
#   REDIS_PORT  Redis's port (default 6399; if unset and 6399 is taken, a free port is used)
#   SELLERHUB_EMULATORS_DIR  state dir: PIDs, logs, env file (default /tmp/sellerhub-emulators)
#   SELLERHUB_VENV           the Python venv (default infra/.venv)
#
# Only the `export ...` lines go to stdout; progress and errors go to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SELLERHUB_VENV:-$ROOT/infra/.venv}"
STATE="${SELLERHUB_EMULATORS_DIR:-/tmp/sellerhub-emulators}"
HOST=127.0.0.1

# Pinned: the versions known to work with this project.
MOTO_VERSION=5.2.1
CFN_LINT_VERSION=1.51.0
# In a venv of its own: its dependencies (hypothesis, jsonschema, werkzeug…) must not move
# moto's.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="${SELLERHUB_SCHEMATHESIS_VENV:-$ROOT/infra/.venv-schemathesis}"

log() { printf '[emulators] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ------------------------------------------------------------------ install

venv_ok() {
    [[ -x "$VENV/bin/python" && -x "$VENV/bin/moto_server" && -x "$VENV/bin/cfn-lint" ]] || return 1
    "$VENV/bin/python" - "$MOTO_VERSION" "$CFN_LINT_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import flask  # noqa: F401  (moto's server extra)
sys.exit(0 if (version("moto"), version("cfn-lint")) == (sys.argv[1], sys.argv[2]) else 1)
PY
}

install_venv() {
    if venv_ok; then
        log "venv $VENV: moto $MOTO_VERSION and cfn-lint $CFN_LINT_VERSION already installed"
        return
    fi
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null || die "$python not found (needed for the moto/cfn-lint venv)"
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating venv $VENV"
        "$python" -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    fi
    log "installing moto[server]==$MOTO_VERSION cfn-lint==$CFN_LINT_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION" "cfn-lint==$CFN_LINT_VERSION" >&2
    venv_ok || die "the venv at $VENV is still incomplete after pip install"
}

# Installs the Debian packages named, as root or with sudo -n.
apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "$* missing and this is not root (apt-get install $*)"
        sudo=(sudo -n)
    fi
    log "installing $* from Debian"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "$@" >&2
}

install_redis() {
    if command -v redis-server >/dev/null; then
        log "redis-server already installed: $(command -v redis-server)"
        return
    fi
    apt_install redis-server
    command -v redis-server >/dev/null || die "redis-server still missing after apt-get install"
}

install_schemathesis() {
    local st="$SCHEMATHESIS_VENV/bin/schemathesis"
    if [[ -x "$st" ]] && "$st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
        log "schemathesis $SCHEMATHESIS_VERSION already installed in $SCHEMATHESIS_VENV"
        return
    fi
    local python="${PYTHON:-python3}"
    [[ -x "$SCHEMATHESIS_VENV/bin/python" ]] || "$python" -m venv "$SCHEMATHESIS_VENV" ||
        die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    log "installing schemathesis==$SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
    "$SCHEMATHESIS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" >&2
    [[ -x "$st" ]] || die "schemathesis is still missing after pip install"
}

CHROMIUM=/usr/bin/chromium
BROWSER_DIR="$ROOT/tests/browser"

# The browser test's tools: Debian's chromium (playwright's own browser download cannot
# work here) and playwright-core exactly as tests/browser/package-lock.json pins it.
install_browser() {
    if [[ -x "$CHROMIUM" ]]; then
        log "chromium already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    else
        # fonts-liberation: text in the screenshots (--no-install-recommends leaves fonts out)
        apt_install chromium fonts-liberation
        [[ -x "$CHROMIUM" ]] || die "$CHROMIUM still missing after apt-get install"
    fi
    command -v node >/dev/null || die "node is missing (the browser test runs with Node.js >= 20)"
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
        die "node $(node --version) is too old: the browser test needs Node.js >= 20"
    local wanted installed
    wanted="$(node -p 'require(process.argv[1]).packages["node_modules/playwright-core"].version' \
        "$BROWSER_DIR/package-lock.json")"
    installed="$(node -p 'require(process.argv[1]).version' \
        "$BROWSER_DIR/node_modules/playwright-core/package.json" 2>/dev/null || true)"
    if [[ "$installed" == "$wanted" ]]; then
        log "playwright-core $wanted already installed in $BROWSER_DIR"
        return
    fi
    log "installing playwright-core $wanted into $BROWSER_DIR (npm ci)"
    npm ci --prefix "$BROWSER_DIR" --no-audit --no-fund --loglevel=error >&2
}

cmd_install() {
    install_venv
    install_schemathesis
    install_redis
    install_browser
}

# ------------------------------------------------------------------ helpers

port_busy() { # port -> 0 when something accepts connections on HOST:port
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# pick_port NAME_OF_OVERRIDE_VAR DEFAULT -> the port to use
pick_port() {
    local var="$1" default="$2"
    if [[ -n "${!var:-}" ]]; then
        port_busy "${!var}" && die "$var=${!var} is already in use on $HOST"
        echo "${!var}"
    elif port_busy "$default"; then
        local port
        port="$(free_port)"
        log "port $default is taken; using $port (set $var to choose)"
        echo "$port"
    else
        echo "$default"
    fi
}

pid_alive() { # name -> 0 when the recorded PID still runs the expected program
    local file="$STATE/$1.pid" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against PID reuse: the process must still be the one we started.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(cat "$STATE/$1.match")"
}

moto_ready() {
    "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/data.json", timeout=1).read()
except urllib.error.HTTPError:
    pass  # it answered HTTP: it is up
PY
}

redis_ready() {
    local reply
    if command -v redis-cli >/dev/null; then
        reply="$(redis-cli -h "$HOST" -p "$1" ping 2>/dev/null)" || return 1
    else
        reply="$(
            exec 3<>"/dev/tcp/$HOST/$1" || exit 1
            printf 'PING\r\n' >&3
            timeout 1 head -c 7 <&3
        )" 2>/dev/null || return 1
    fi
    [[ "$reply" == *PONG* ]]
}

# wait_ready NAME CHECK PORT SECONDS
# listens_ours NAME PORT -> 0 when the process we started as NAME is the one listening on
# PORT. Another test run on this machine may have taken the port between pick_port and our
# start: then ours exits ("address in use") while theirs answers, and would vanish with
# their run. Without ss, assume it is ours.
listens_ours() {
    command -v ss >/dev/null || return 0
    ss -ltnpH "sport = :$2" 2>/dev/null | grep -q "pid=$(cat "$STATE/$1.pid"),"
}

wait_ready() {
    local name="$1" check="$2" port="$3" secs="$4" i
    for ((i = 0; i < secs * 10; i++)); do
        if "$check" "$port" && listens_ours "$name" "$port"; then
            return 0
        fi
        if ! pid_alive "$name"; then
            log "$name exited during start-up; its log ($STATE/$name.log):"
            tail -n 30 "$STATE/$name.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    log "$name did not answer on $HOST:$port within ${secs}s; its log ($STATE/$name.log):"
    tail -n 30 "$STATE/$name.log" >&2 || true
    return 1
}

# launch NAME MATCH CMD... : start CMD in its own session, record its PID
launch() {
    local name="$1" match="$2"
    shift 2
    echo "$match" >"$STATE/$name.match"
    # A plain background job: $! is the server's own PID (what `stop` kills), and it
    # outlives this script; nohup so that closing the caller's terminal does not end it.
    nohup "$@" >"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
}

print_env() {
    [[ -f "$STATE/env" ]] || die "no emulators recorded in $STATE (run: $0 start)"
    cat "$STATE/env"
}

# ------------------------------------------------------------------ start / stop

cmd_start() {
    [[ -x "$VENV/bin/moto_server" ]] || die "no moto_server in $VENV (run: $0 install)"
    command -v redis-server >/dev/null || die "redis-server not installed (run: $0 install)"
    mkdir -p "$STATE"

    if pid_alive moto && pid_alive redis && [[ -f "$STATE/env" ]]; then
        log "already running (moto pid $(cat "$STATE/moto.pid"), redis pid $(cat "$STATE/redis.pid"))"
        print_env
        return
    fi
    cmd_stop 2>/dev/null || true
    mkdir -p "$STATE"

    local moto_port redis_port
    moto_port="$(pick_port MOTO_PORT 5055)"
    redis_port="$(pick_port REDIS_PORT 6399)"

    log "starting moto_server on $HOST:$moto_port"
    launch moto "$VENV/bin/moto_server" "$VENV/bin/moto_server" -H "$HOST" -p "$moto_port"
    log "starting redis-server on $HOST:$redis_port (no persistence)"
    launch redis "redis-server" redis-server --bind "$HOST" --port "$redis_port" \
        --save "" --appendonly no --protected-mode yes --daemonize no --dir "$STATE"

    if ! wait_ready moto moto_ready "$moto_port" 60 || ! wait_ready redis redis_ready "$redis_port" 20; then
        cmd_stop
        die "emulators failed to start"
    fi

    cat >"$STATE/env" <<EOF
export MOTO_ENDPOINT=http://$HOST:$moto_port
export REDIS_URL=redis://$HOST:$redis_port
EOF
    log "ready (moto pid $(cat "$STATE/moto.pid"), redis pid $(cat "$STATE/redis.pid"))"
    print_env
}

stop_one() {
    local name="$1" pid i
    if pid_alive "$name"; then
        pid="$(cat "$STATE/$name.pid")"
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$STATE/$name.pid" "$STATE/$name.match"
}

cmd_stop() {
    [[ -d "$STATE" ]] || return 0
    stop_one moto
    stop_one redis
    rm -f "$STATE/env"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
env) print_env ;;
schemathesis) echo "$SCHEMATHESIS_VENV/bin/schemathesis" ;;
chromium) echo "$CHROMIUM" ;;
*)
    echo "usage: $0 install|start|stop|env|schemathesis|chromium" >&2
    exit 2
    ;;
esac
