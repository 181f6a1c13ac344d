#!/usr/bin/env bash
# Benchmarks, loopback only, bounded:
#   - cold starts: each function's release binary under the Lambda Runtime API emulator —
#     init time (spawn -> first GET /next), first invocation, peak RSS, size — as medians
#     over RUNS cold starts, with DynamoDB and SQS on moto, next to the same figures of the
#     floor (coldstart-floor, tests/floor: a hello-world lambda_http built with the same
#     profile, also started before each run), and a table of them as ratios of the floor's;
#   - the rate limiter's round trips per check and check latency against Redis (limiter_bench);
#   - ingest: the webhook ingest handlers' p50/p99 in process, excluding the SQS call
#     (ingest_bench), then the local runner's accepted webhooks/s at 64 connections against
#     the Node/BullMQ peer in PEER_DIR (default ../shared/peers/node-bullmq), in the same
#     run, with the same wrk script, body and signature, counting the accepted webhooks on
#     the queue;
#   - SSE: the local runner holding SSE_STREAMS (1000) GET /v1/events streams with
#     heartbeats (its RSS and CPU), and webhook accepted -> event received on them, p50/p99
#     (sse_bench; goal p99 <= 50 ms).
#
#   bash infra/bench.sh all [--quick]   # every budget in one table (docs/BENCHMARKS.md): release
#                                       # builds, cold starts with peak RSS after WARM (1000) warm
#                                       # invocations, sizes (x86_64 and arm64), limiter,
#                                       # ingest vs the peer, SSE, reads per authenticated request,
#                                       # worker throughput and the cost per million webhooks
#   bash infra/bench.sh                 # everything: cold starts of every function, limiter, ingest, SSE
#   RUNS=50 bash infra/bench.sh health  # cold starts of the named functions, then the limiter
#   bash infra/bench.sh ingest          # the ingest benchmarks only
#   bash infra/bench.sh sse             # the SSE benchmark only
#
# Cold-start settings (env): RUNS=20; LAMBDA_BIN_DIR=dir runs the prebuilt binaries named
# after each function (and coldstart-floor) in dir instead of building them, e.g. a copy of
# target/release kept from before a change.
#
# SSE settings (env, defaults): SSE_STREAMS=1000 SSE_TENANTS=10 SSE_HOLD_SECS=35
# SSE_HEARTBEAT_MS=5000 (the runner's EVENTS_HEARTBEAT_MS; 30000 in production) SSE_MESSAGES=300
# SSE_INTERVAL_MS=20; it runs RUNNER_BIN too.
#
# Ingest settings (env, defaults): INGEST_ROUNDS=3 (runner/peer pairs, order alternating),
# THREADS=2 CONNS=64 WARMUP=5s DURATION=15s (wrk, for both sides), HANDLER_ROUNDS=5
# HANDLER_REQUESTS=20000 (ingest_bench), RUNNER_PORT=3911, PEER_PORT=3901, LOG_LEVEL (the
# runner's; unset: info, as shipped), KEEP_LOGS=1 keeps the runner's stdout and data,
# RUNNER_BIN (default target/runner/local, built here with the `runner` profile) to load
# another build of the runner.
# `all` settings (env, defaults; --quick: RUNS=5 WARM=200 INGEST_ROUNDS=1 WARMUP=2s DURATION=6s
# HANDLER_ROUNDS=3 HANDLER_REQUESTS=5000 SSE_HOLD_SECS=10 SSE_MESSAGES=100
# PIPELINE_WEBHOOKS=400 PIPELINE_MOTO_WEBHOOKS=100): RUNS=20 WARM=1000 PIPELINE_WEBHOOKS=2000
# (embedded) PIPELINE_MOTO_WEBHOOKS=200 (moto is slow: it sets the pace there), RESULTS (default
# target/bench/results-<time>.txt): every section appends "key value" lines to it, and the
# table (infra/bench-table.sh RESULTS) is made from it at the end; a section that fails
# records why, and its rows say so.
# Installs from Debian what the ingest needs and lacks (wrk, redis-server, curl, jq); node
# >= 20 must be installed. The peer runs from a scratch copy (its npm install writes there).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Every section appends "key value" lines here; the table is made from them.
RESULTS=${RESULTS:-$ROOT/target/bench/results-$(date -u +%Y%m%dT%H%M%SZ).txt}
mkdir -p "$(dirname "$RESULTS")"
result() { echo "$1 $2" >>"$RESULTS"; }

functions=()
coldstarts=true
ingest=true
sse=true
all=false
if [ $# -ge 1 ] && [ "$1" = all ]; then
    all=true
    if [ $# -eq 2 ] && [ "$2" = --quick ]; then
        : "${RUNS:=5}" "${WARM:=200}" "${INGEST_ROUNDS:=1}" "${WARMUP:=2s}" "${DURATION:=6s}"
        : "${HANDLER_ROUNDS:=3}" "${HANDLER_REQUESTS:=5000}" "${SSE_HOLD_SECS:=10}"
        : "${SSE_MESSAGES:=100}" "${PIPELINE_WEBHOOKS:=400}" "${PIPELINE_MOTO_WEBHOOKS:=100}"
        QUICK=true
    elif [ $# -ne 1 ]; then
        echo "usage: bash infra/bench.sh all [--quick]" >&2
        exit 2
    fi
    : "${WARM:=1000}"
elif [ $# -eq 1 ] && [ "$1" = ingest ]; then
    coldstarts=false
    sse=false
elif [ $# -eq 1 ] && [ "$1" = sse ]; then
    coldstarts=false
    ingest=false
elif [ $# -gt 0 ]; then
    functions=("$@")
    ingest=false
    sse=false
fi

# moto and Redis on 127.0.0.1 (installed first if missing), stopped by the EXIT trap.
start_emulators() {
    local EMULATORS=(bash "$ROOT/infra/emulators.sh")
    "${EMULATORS[@]}" install
    export SELLERHUB_EMULATORS_DIR="${SELLERHUB_EMULATORS_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sellerhub-bench.XXXXXX")}"
    EMULATORS_STARTED=true
    eval "$("${EMULATORS[@]}" start)"
    export MOTO_ENDPOINT REDIS_URL
}

# ------------------------------------------------------------------ cold starts, limiter

run_coldstarts() {
    local EMULATORS=(bash "$ROOT/infra/emulators.sh")
    start_emulators

    if [ ${#functions[@]} -eq 0 ]; then
        for dir in functions/*/; do functions+=("$(basename "$dir")"); done
    fi

    # Throwaway secrets for the bench's functions (never used anywhere else).
    random() { head -c "$1" /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '='; }
    local secrets=(
        "SESSION_SIGNING_KEY=$(random 32)"
        "CURSOR_SIGNING_KEY=$(random 32)"
        "GRANT_ENCRYPTION_KEY=bench:$(head -c 32 /dev/urandom | base64 -w0)"
        "MERCADOLIVRE_CLIENT_SECRET=$(random 24)"
        "MERCADOLIVRE_CLIENT_ID=123456"
        "MERCADOLIVRE_REDIRECT_URI=https://api.example.com/prod/auth/callback"
        "META_APP_SECRET=$(random 24)"
        "META_VERIFY_TOKEN=$(random 24)"
    )

    # What each function is invoked with: its route (a request it answers without calling
    # Mercado Livre) and the services and secrets its init needs.
    bench_args() {
        case "$1" in
            health) echo "--path /health" ;;
            auth-login) echo "--path /auth/login --upstash" ;;
            auth-callback) echo "--path /auth/callback --upstash" ;;
            auth-logout) echo "--path /auth/logout --method POST" ;;
            me) echo "--path /v1/me" ;;
            web) echo "--path /" ;;
            channels) echo "--path /v1/channels --upstash" ;;
            questions) echo "--path /v1/questions --upstash" ;;
            conversations) echo "--path /v1/conversations --upstash" ;;
            notifications) echo "--path /v1/notifications --upstash" ;;
            events) echo "--path /v1/events" ;;
            webhook-mercadolivre) echo "--path /webhooks/mercadolivre --method POST --body {}" ;;
            webhook-meta) echo "--path /webhooks/meta" ;;
            webhook-worker) echo "--upstash --sqs-meta" ;;
            token-refresher | reconciler) echo "--upstash" ;;
            *) echo "" ;;
        esac
    }

    cargo build --release -p sellerhub-tests --bin lambda_coldstart --bin limiter_bench
    local floor_bin="${LAMBDA_BIN_DIR:-$ROOT/target/release}/$FLOOR"
    [ -n "${LAMBDA_BIN_DIR:-}" ] || cargo build --release -p "$FLOOR"
    # One function's cold starts: built in the release profile by lambda_coldstart, or the
    # prebuilt binary of that name in LAMBDA_BIN_DIR.
    coldstart() {
        local name=$1 prebuilt=()
        shift
        [ -z "${LAMBDA_BIN_DIR:-}" ] || prebuilt=(--binary "$LAMBDA_BIN_DIR/$name")
        "$ROOT/target/release/lambda_coldstart" "$name" "${RUNS:-20}" --moto "${prebuilt[@]}" "$@" \
            "${secrets[@]}"
    }
    # The floor's own figures once; then each function's runs, each just after a start of
    # the floor (paired: the machine's changing load weighs on both alike). The reports are
    # kept for the summary.
    result bench.runs "${RUNS:-20}"
    result bench.warm "${WARM:-0}"
    local reports load_before
    reports=$(mktemp -d "${TMPDIR:-/tmp}/sellerhub-coldstarts.XXXXXX")
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "== $FLOOR (the floor: hello-world lambda_http, the same release profile)"
    local warm=()
    [ "${WARM:-0}" -gt 0 ] && warm=(--warm "$WARM")
    coldstart "$FLOOR" "${warm[@]}" --results "$RESULTS" | tee "$reports/floor.txt" \
        || result "coldstart.$FLOOR.unmeasured" "lambda_coldstart failed (its output is above)"
    local i function
    for i in "${!functions[@]}"; do
        function=${functions[$i]}
        echo "== $function"
        # The worker's invocations are full batches of 10 records: WARM records in all.
        warm=()
        if [ "${WARM:-0}" -gt 0 ]; then
            warm=(--warm "$WARM")
            [ "$function" = webhook-worker ] && warm=(--warm "$(((WARM + 9) / 10))")
        fi
        # shellcheck disable=SC2046 # the arguments are words on purpose
        coldstart "$function" --floor "$floor_bin" $(bench_args "$function") "${warm[@]}" \
            --results "$RESULTS" | tee "$reports/$i.txt" \
            || result "coldstart.$function.unmeasured" "lambda_coldstart failed (its output is above)"
    done
    coldstart_floor_summary "$reports" "$load_before" "${functions[@]}"
    rm -rf "$reports"

    echo "== rate limiter: round trips and check latency (redis-server through the Upstash REST shim)"
    "$ROOT/target/release/limiter_bench" 5 1000 --check | tee "$RESULTS.limiter"
    awk '/round trips\/check/ {
            key = /cached denial/ ? "limiter.cached" : "limiter.check"
            for (i = 1; i <= NF; i++) {
                if ($i == "round") print key ".round_trips", $(i + 2)
                if ($i == "p50" || $i == "p99") print key "." $i "_us", $(i + 1)
            }
        }' "$RESULTS.limiter" >>"$RESULTS"
    rm -f "$RESULTS.limiter"
    "${EMULATORS[@]}" stop
    EMULATORS_STARTED=false
}

# The hello-world lambda_http package (tests/floor) every function's cold start is compared to.
FLOOR=coldstart-floor
FLOOR_MAX_RATIO=2

# A figure from a lambda_coldstart report: "init", "floor" (the floor's init, paired),
# "ratio" (the median of the runs' init/floor), "first" (first invocation), "rss" (peak,
# median) or "size", in ms, MiB or ×.
coldstart_figure() {
    case "$2" in
        init) sed -nE 's/^init \(spawn.* median ([0-9.]+) ms .*/\1/p' "$1" ;;
        floor) sed -nE 's/^floor init +median ([0-9.]+) ms .*/\1/p' "$1" ;;
        ratio) sed -nE 's/^floor init .*init\/floor: median ([0-9.]+)×.*/\1/p' "$1" ;;
        first) sed -nE 's/^first invocation +median ([0-9.]+) ms .*/\1/p' "$1" ;;
        rss) sed -nE 's/^peak RSS \(VmHWM\) +median ([0-9.]+) MiB .*/\1/p' "$1" ;;
        size) sed -nE 's/^binary size +([0-9.]+) MiB .*/\1/p' "$1" ;;
    esac
}

# The cold-start table: each function's medians next to the floor's, from the same harness
# in the same run, and whether its init is within FLOOR_MAX_RATIO× the floor's (the median
# of its runs' ratios to the floor started just before each).
coldstart_floor_summary() {
    local reports=$1 load_before=$2
    shift 2
    local f="$reports/floor.txt" floor_first floor_rss floor_size
    floor_first=$(coldstart_figure "$f" first) floor_rss=$(coldstart_figure "$f" rss)
    floor_size=$(coldstart_figure "$f" size)
    echo
    echo "== cold starts against the floor ($FLOOR), medians of ${RUNS:-20} runs; load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
    echo "   (init: each run paired with a start of the floor just before it; ×floor: the median of the runs' ratios)"
    printf '%-22s %8s %8s %7s   %10s %7s   %8s %7s   %8s %7s\n' function "init ms" floor ×floor \
        "1st inv ms" ×floor "RSS MiB" ×floor "size MiB" ×floor
    printf '%-22s %8s %8s %7s   %10s %7s   %8s %7s   %8s %7s\n' "$FLOOR" "" "" "" \
        "${floor_first:-?}" 1.00× "${floor_rss:-?}" 1.00× "${floor_size:-?}" 1.00×
    local over=() functions=("$@") i
    for i in "${!functions[@]}"; do
        local function=${functions[$i]} r="$reports/$i.txt" init floor ratio first rss size
        init=$(coldstart_figure "$r" init) floor=$(coldstart_figure "$r" floor)
        ratio=$(coldstart_figure "$r" ratio) first=$(coldstart_figure "$r" first)
        rss=$(coldstart_figure "$r" rss) size=$(coldstart_figure "$r" size)
        printf '%-22s %8s %8s %6s×   %10s %6s×   %8s %6s×   %8s %6s×\n' "$function" \
            "${init:-?}" "${floor:-?}" "${ratio:-?}" \
            "${first:-?}" "$(ratio "${first:-0}" "${floor_first:-0}")" \
            "${rss:-?}" "$(ratio "${rss:-0}" "${floor_rss:-0}")" \
            "${size:-?}" "$(ratio "${size:-0}" "${floor_size:-0}")"
        awk -v r="${ratio:-0}" -v m="$FLOOR_MAX_RATIO" 'BEGIN { exit !(r > 0 && r <= m) }' \
            || over+=("$function")
    done
    if [ ${#over[@]} -eq 0 ]; then
        echo "init ≤ ${FLOOR_MAX_RATIO}× the floor: met by every function"
    else
        echo "init ≤ ${FLOOR_MAX_RATIO}× the floor: NOT met by ${over[*]}"
    fi
}

# ------------------------------------------------------------------ ingest

PEER_SRC="${PEER_DIR:-$ROOT/../shared/peers/node-bullmq}"
INGEST_ROUNDS=${INGEST_ROUNDS:-3}
THREADS=${THREADS:-2} CONNS=${CONNS:-64} WARMUP=${WARMUP:-5s} DURATION=${DURATION:-15s}
RUNNER_PORT=${RUNNER_PORT:-3911} PEER_PORT=${PEER_PORT:-3901}
RUNNER_BIN=${RUNNER_BIN:-$ROOT/target/runner/local}
# The peer's sign.js default: the runner gets it as META_APP_SECRET, so one SIG serves both.
APP_SECRET=peer-bench-app-secret
RUNNER_PID=''
EMULATORS_STARTED=false

# Stops only what this script started: the local runner (the peer's run.sh stops its own).
cleanup() {
    if [ -n "$RUNNER_PID" ]; then stop_pid "$RUNNER_PID"; fi
    if $EMULATORS_STARTED; then bash "$ROOT/infra/emulators.sh" stop || true; fi
}
trap cleanup EXIT

die() { echo "bench: $*" >&2; exit 1; }

# Installs Debian packages for the commands that are missing (as emulators.sh does for redis).
apt_install() {
    local missing=() pair command package
    for pair in "$@"; do
        command=${pair%%:*} package=${pair#*:}
        command -v "$command" >/dev/null || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "missing ${missing[*]} and this is not root (apt-get install -y ${missing[*]})"
        sudo=(sudo -n)
    fi
    echo "bench: installing ${missing[*]} from Debian" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_pid() { # SIGTERM, wait up to 10 s (the runner drains), then SIGKILL
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# wrk latency ("912.00us", "8.85ms", "1.02s") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
        else printf "nan" }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# CPU over the middle of a wrk run (1 s in, until 1 s before its end), as the peer's run.sh
# measures it: the runner, wrk, and "other" (machine busy minus those two: the other
# engineer's compile, the kernel's softirq).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_snap() { echo "$(awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 }' /proc/stat) $(ticks "$1") $(ticks "$2")"; }
cores() { awk -v t="$1" -v s="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / s / hz }'; }

# Accepted webhooks, counted by the handler's EMF metric line (written before the 200,
# at any LOG_LEVEL).
accepted() { { grep -F '"Outcome":"Accepted"' "$1" || true; } | grep -cF '"Source":"meta"' || true; }

# One measured run of the local runner; appends "rps p50_ms p99_ms" to $WORK/ours.txt.
run_ours() {
    local n=$1 data="$WORK/runner-$n" log="$WORK/runner-$n.stdout"
    local url="http://127.0.0.1:$RUNNER_PORT/webhooks/meta" w="$WORK/wrk-ours-$n.txt"
    port_in_use "$RUNNER_PORT" && die "port $RUNNER_PORT is in use; set RUNNER_PORT"
    # A clean environment: only what selects the embedded adapters, no workers, this port.
    env -i PATH="$PATH" HOME="$HOME" HOST=127.0.0.1 PORT="$RUNNER_PORT" DATA_DIR="$data" \
        LOCAL_WORKERS=false STORE_BACKEND=embedded QUEUE_BACKEND=embedded \
        HEALTH_CACHE_MS=0 HEALTH_MAX_WAITING=1000000000 META_APP_SECRET="$APP_SECRET" \
        ${LOG_LEVEL:+LOG_LEVEL="$LOG_LEVEL"} \
        "$RUNNER_BIN" >"$log" 2>"$WORK/runner-$n.stderr" &
    RUNNER_PID=$!
    local up=false
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$RUNNER_PORT/health" && { up=true; break; }
        kill -0 "$RUNNER_PID" 2>/dev/null || break
        sleep 0.05
    done
    $up || die "the local runner did not start; see $WORK/runner-$n.stderr and $log"

    (cd "$PEER" && SIG="$SIG" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s post.lua "$url" >"$WORK/wrk-ours-$n-warmup.txt")
    sleep 1
    local a0 q0
    a0=$(accepted "$log")
    q0=$(curl -s "http://127.0.0.1:$RUNNER_PORT/health" | jq -e '.checks.queue.visible') \
        || die "GET /health gave no queue depth"

    (cd "$PEER" && SIG="$SIG" exec wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s post.lua "$url" >"$w") &
    local wrk_pid=$! secs=$((${DURATION%s} - 2)) b0 sv0 wr0 b1 sv1 wr1
    sleep 1; read -r b0 sv0 wr0 <<<"$(cpu_snap "$RUNNER_PID" "$wrk_pid")"
    sleep "$secs"; read -r b1 sv1 wr1 <<<"$(cpu_snap "$RUNNER_PID" "$wrk_pid")"
    wait "$wrk_pid"
    sleep 1 # let requests cut off by wrk's stop finish
    local a1 hwm
    a1=$(accepted "$log")
    hwm=$(awk '/^VmHWM/{ print $2 }' "/proc/$RUNNER_PID/status")
    stop_pid "$RUNNER_PID"
    RUNNER_PID=''
    local a_end stats total visible dlq
    a_end=$(accepted "$log")
    stats=$("$ROOT/target/release/ingest_bench" queue-stats "$data")
    total=$(jq .total <<<"$stats") visible=$(jq .visible <<<"$stats") dlq=$(jq .dead_letters <<<"$stats")

    local rps p50 p99 reqs non2xx wrk200 sent queued
    rps=$(awk '/^Requests\/sec:/{ print $2 }' "$w")
    p50=$(awk '$1 == "50%" { print $2 }' "$w") p99=$(awk '$1 == "99%" { print $2 }' "$w")
    reqs=$(awk '/requests in/{ print $1 }' "$w")
    non2xx=$(awk '/Non-2xx or 3xx responses:/{ print $NF }' "$w"); non2xx=${non2xx:-0}
    wrk200=$((reqs - non2xx)) sent=$((a1 - a0)) queued=$((total - q0))
    # The handler answers 200 only once its message is committed (fsynced), so every 200
    # must be on the queue. The queue may hold a few more: requests wrk cut off when it
    # stopped, whose message was committed but whose 200 was never sent (the connection
    # was gone; a sender retries those): at most one per connection at each wrk stop.
    local verdict="none lost: every 200 sent is on the queue ($queued queued, $sent 200s sent; $((queued - sent)) more committed for requests cut off at wrk's stop, never answered)"
    if [ "$queued" -lt "$sent" ] || [ $((queued - sent)) -gt "$CONNS" ] || [ "$non2xx" -ne 0 ] \
        || [ "$wrk200" -gt "$sent" ] || [ "$total" -lt "$a_end" ] || [ $((total - a_end)) -gt $((2 * CONNS)) ] \
        || [ "$a_end" -ne "$a1" ] || [ "$dlq" -ne 0 ]; then
        verdict="MISMATCH: $queued queued, $sent 200s sent"
        LOST=1
    fi
    local lines bytes other
    lines=$(wc -l <"$log") bytes=$(du -m "$log" | cut -f1)
    other=$(cores $((b1 - b0 - (sv1 - sv0) - (wr1 - wr0))) "$secs")
    cat <<EOF
-- local runner, run $n: wrk -t$THREADS -c$CONNS -d$DURATION --latency -s post.lua (after a $WARMUP warm-up)
requests/s            : $rps
latency p50 / p99     : $p50 / $p99
responses (wrk)       : $reqs, of which 200: $wrk200, non-2xx: $non2xx; $(grep -o 'Socket errors:.*' "$w" || echo 'Socket errors: none')
200s sent (runner)    : $sent over the measured run (EMF Accepted lines; incl. requests cut off at wrk's stop)
messages queued       : $queued (embedded queue after SIGTERM: $total in all = $visible visible, $dlq dead letters; $q0 before the measured run)
verdict               : $verdict
runner's whole life   : $total queued, $a_end 200s sent (warm-up included)
runner peak RSS       : $((hwm / 1024)) MiB (VmHWM $hwm kB)
CPU mid-run           : runner $(cores $((sv1 - sv0)) "$secs"), wrk $(cores $((wr1 - wr0)) "$secs"), other $other cores (other: the rest of the machine, incl. kernel softirq)
runner stdout         : $lines lines, $bytes MiB, to a file (LOG_LEVEL ${LOG_LEVEL:-info})
EOF
    [ "${KEEP_LOGS:-0}" = 1 ] || rm -rf "$log" "$data"
    echo "$rps $(to_ms "$p50") $(to_ms "$p99") $((hwm / 1024)) $other" >>"$WORK/ours.txt"
}

# One run of the peer's own run.sh; appends "rps p50_ms p99_ms" to $WORK/peer.txt.
run_peer() {
    local n=$1 out="$WORK/peer-$n.txt" rc=0
    (cd "$PEER" && env PORT="$PEER_PORT" APP_SECRET="$APP_SECRET" THREADS="$THREADS" \
        CONNS="$CONNS" WARMUP="$WARMUP" DURATION="$DURATION" bash run.sh) >"$out" 2>&1 || rc=$?
    echo "-- node-bullmq peer, run $n (its run.sh; full output in $out)"
    sed -n '/^== node-bullmq peer/,$p' "$out" | tail -n +2
    [ "$rc" -eq 0 ] || { echo "peer run.sh exited $rc:"; tail -20 "$out"; LOST=1; return 0; }
    local rps p50 p99 other
    rps=$(awk -F' : ' '/^requests\/s/{ print $2 }' "$out")
    read -r p50 p99 < <(awk -F' : ' '/^latency p50/{ split($2, l, " / "); print l[1], l[2] }' "$out")
    other=$(sed -nE 's/^CPU mid-run .* other (-?[0-9.]+) .*/\1/p' "$out")
    echo "$rps $(to_ms "$p50") $(to_ms "$p99") ${other:-?}" >>"$WORK/peer.txt"
}

run_ingest() {
    [ -f "$PEER_SRC/run.sh" ] && [ -f "$PEER_SRC/post.lua" ] && [ -f "$PEER_SRC/body.json" ] \
        || die "the Node/BullMQ peer is missing: set PEER_DIR to its directory (not found: $PEER_SRC)"
    [[ $DURATION =~ ^[0-9]+s$ ]] && [ "${DURATION%s}" -ge 4 ] || die "DURATION must be whole seconds >= 4, like 15s"
    apt_install wrk:wrk redis-server:redis-server redis-cli:redis-tools curl:curl jq:jq
    command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] \
        || die "the peer needs node >= 20"
    # The runner's own profile (opt-level 3: a long-running server; the Lambda binaries are
    # built for size).
    cargo build --profile runner -p local --bin local
    cargo build --release -p sellerhub-tests --bin ingest_bench

    WORK=$(mktemp -d "${TMPDIR:-/tmp}/sellerhub-ingest.XXXXXX")
    # The peer runs from a copy (its npm install writes node_modules and the lock), kept
    # across runs per package.json/lock so node_modules is installed once.
    PEER="${TMPDIR:-/tmp}/sellerhub-bench-peer-$(cat "$PEER_SRC/package.json" "$PEER_SRC/package-lock.json" | sha256sum | cut -c1-12)"
    mkdir -p "$PEER"
    find "$PEER_SRC" -maxdepth 1 -type f -exec cp -f {} "$PEER/" \;
    chmod -R u+w "$PEER"
    cmp -s "$PEER/body.json" tests/fixtures/bench/meta-whatsapp-text.json \
        || echo "bench: note: the peer's body.json differs from tests/fixtures/bench/meta-whatsapp-text.json (ingest_bench's body)" >&2
    SIG=$(cd "$PEER" && APP_SECRET="$APP_SECRET" node sign.js)

    echo "== ingest handlers in process, excluding the SQS call (ingest_bench; log and EMF lines to /dev/null)"
    "$ROOT/target/release/ingest_bench" "${HANDLER_ROUNDS:-5}" "${HANDLER_REQUESTS:-20000}" --check \
        2> >(tee "$WORK/ingest_bench.txt" >&2) >/dev/null || result ingest.handler.over_budget 1
    sleep 0.2 # the tee's last lines
    awk '$2 == "handle()" && $3 == "p50" { print "ingest.handler." $1 ".p50_us", $4; print "ingest.handler." $1 ".p99_us", $7 }' \
        "$WORK/ingest_bench.txt" >>"$RESULTS"

    echo "== ingest: the local runner (release, embedded queue, LOCAL_WORKERS=false) vs the node-bullmq peer, $INGEST_ROUNDS rounds back to back, order alternating"
    LOST=0
    : >"$WORK/ours.txt"; : >"$WORK/peer.txt"
    local n orders=()
    for n in $(seq "$INGEST_ROUNDS"); do
        if [ $((n % 2)) -eq 1 ]; then
            run_ours "$n"; run_peer "$n"; orders+=("ours, peer")
        else
            run_peer "$n"; run_ours "$n"; orders+=("peer, ours")
        fi
    done

    local -a ours_rps peer_rps ours_p50 ours_p99 peer_p50 peer_p99 ours_hwm ours_other peer_other ratios
    mapfile -t ours_rps < <(awk '{ print $1 }' "$WORK/ours.txt")
    mapfile -t ours_p50 < <(awk '{ print $2 }' "$WORK/ours.txt")
    mapfile -t ours_p99 < <(awk '{ print $3 }' "$WORK/ours.txt")
    mapfile -t ours_hwm < <(awk '{ print $4 }' "$WORK/ours.txt")
    mapfile -t ours_other < <(awk '{ print $5 }' "$WORK/ours.txt")
    mapfile -t peer_rps < <(awk '{ print $1 }' "$WORK/peer.txt")
    mapfile -t peer_p50 < <(awk '{ print $2 }' "$WORK/peer.txt")
    mapfile -t peer_p99 < <(awk '{ print $3 }' "$WORK/peer.txt")
    mapfile -t peer_other < <(awk '{ print $4 }' "$WORK/peer.txt")
    [ ${#peer_rps[@]} -eq "$INGEST_ROUNDS" ] || die "a peer run failed; see $WORK/peer-*.txt"

    echo
    echo "== ingest summary: $(nproc) cores, wrk -t$THREADS -c$CONNS -d$DURATION --latency, the peer's post.lua, body.json and SIG on both, loopback"
    echo "   (other: cores busy with anything but the server under test, its Redis and wrk — noise; ~0 is a clean run)"
    printf '%-7s %-11s %11s %9s %9s %6s   %11s %9s %9s %6s   %6s\n' round order "ours req/s" p50 p99 other "peer req/s" p50 p99 other ratio
    for n in $(seq "$INGEST_ROUNDS"); do
        local i=$((n - 1))
        ratios+=("$(ratio "${ours_rps[$i]}" "${peer_rps[$i]}")")
        printf '%-7s %-11s %11s %7sms %7sms %6s   %11s %7sms %7sms %6s   %5s×\n' "$n" "${orders[$i]}" \
            "${ours_rps[$i]}" "${ours_p50[$i]}" "${ours_p99[$i]}" "${ours_other[$i]}" \
            "${peer_rps[$i]}" "${peer_p50[$i]}" "${peer_p99[$i]}" "${peer_other[$i]}" "${ratios[$i]}"
    done
    local ours peer r
    ours=$(median "${ours_rps[@]}") peer=$(median "${peer_rps[@]}") r=$(ratio "$ours" "$peer")
    printf '%-19s %11s %7sms %7sms %6s   %11s %7sms %7sms %6s   %5s×\n' median "$ours" \
        "$(median "${ours_p50[@]}")" "$(median "${ours_p99[@]}")" "" \
        "$peer" "$(median "${peer_p50[@]}")" "$(median "${peer_p99[@]}")" "" "$r"
    echo "ratio ours/peer: ${r}× of the medians, $(median "${ratios[@]}")× the median of the rounds' ratios — goal ≥ 5×: $(awk -v r="$r" 'BEGIN { print (r >= 5 ? "met" : "NOT met") }')"
    echo "runner peak RSS (VmHWM): median $(median "${ours_hwm[@]}") MiB; every runner run: $([ "$LOST" -eq 0 ] && echo "none lost (every 200 on the queue)" || echo "MISMATCH, see above")"
    result ingest.rounds "$INGEST_ROUNDS"
    result ingest.wrk "-t$THREADS -c$CONNS -d$DURATION"
    result ingest.ours.rps "$ours"
    result ingest.ours.p99_ms "$(median "${ours_p99[@]}")"
    result ingest.peer.rps "$peer"
    result ingest.peer.p99_ms "$(median "${peer_p99[@]}")"
    result ingest.ratio "$r"
    result ingest.lost "$LOST"
    result ingest.other_cores_max "$(printf '%s\n' "${ours_other[@]}" "${peer_other[@]}" | sort -g | tail -1)"
    [ "$LOST" -eq 0 ] || die "webhooks lost or a peer run failed; see above and $WORK"
    [ "${KEEP_LOGS:-0}" = 1 ] || rm -rf "$WORK"
}

# ------------------------------------------------------------------ SSE

run_sse() {
    cargo build --profile runner -p local --bin local
    cargo build --release -p sellerhub-tests --bin sse_bench
    # sse_bench starts the runner itself (fresh DATA_DIR, loopback, workers on) and stops it.
    local out rc=0
    out=$(mktemp "${TMPDIR:-/tmp}/sellerhub-sse.XXXXXX")
    "$ROOT/target/release/sse_bench" --runner "$RUNNER_BIN" \
        --streams "${SSE_STREAMS:-1000}" --tenants "${SSE_TENANTS:-10}" \
        --hold-secs "${SSE_HOLD_SECS:-35}" --heartbeat-ms "${SSE_HEARTBEAT_MS:-5000}" \
        --messages "${SSE_MESSAGES:-300}" --interval-ms "${SSE_INTERVAL_MS:-20}" --check \
        | tee "$out" || rc=$?
    result sse.streams_wanted "${SSE_STREAMS:-1000}"
    awk -F' *: ' '
        /^streams open/ { split($2, a, " "); print "sse.streams_open", a[1] }
        /^held/ { match($2, /runner RSS [0-9.]+/); print "sse.rss_mib", substr($2, RSTART + 11, RLENGTH - 11) }
        /^accepted -> received/ {
            match($2, /p50 [0-9.]+/); print "sse.latency_p50_ms", substr($2, RSTART + 4, RLENGTH - 4)
            match($2, /p99 [0-9.]+/); print "sse.latency_p99_ms", substr($2, RSTART + 4, RLENGTH - 4)
        }
        /^events received/ { match($2, /missing [0-9]+/); print "sse.missing", substr($2, RSTART + 8, RLENGTH - 8) }
    ' "$out" >>"$RESULTS"
    rm -f "$out"
    return "$rc"
}

# ------------------------------------------------------------------ sizes

# Each function's release binary (x86_64, built here) and, when this run built them
# (build_arm64: `all` without --quick), its arm64 one; zipped
# as Lambda takes it (one deflated `bootstrap`).
zip_size() {
    python3 - "$1" <<'PY'
import io, sys, zipfile
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
    archive.write(sys.argv[1], "bootstrap")
print(len(buffer.getvalue()))
PY
}

# Every function for arm64 in the release profile, as deployed, with cargo-lambda (zig links
# it): installed by infra/deploy-build.sh. Recorded in the results, so that run_sizes reads
# only what this run built (a `LAMBDA_PROFILE=ci` deploy build leaves unoptimised ones).
build_arm64() {
    bash "$ROOT/infra/deploy-build.sh" install
    PATH="$ROOT/infra/.venv-deploy/bin:$PATH" cargo lambda build --release --arm64 "$@"
    result size.arm64_built 1
}

run_sizes() {
    local dir function binary
    for dir in functions/*/; do
        function=$(basename "$dir")
        binary="$ROOT/target/release/$function"
        if [ -f "$binary" ]; then
            result "size.$function.x86_64" "$(stat -c %s "$binary")"
            result "size.$function.x86_64_zip" "$(zip_size "$binary")"
        else
            result "size.$function.x86_64" "UNMEASURED: not built"
        fi
        binary="$ROOT/target/lambda/$function/bootstrap"
        # Built by this run (build_arm64), for aarch64 (ELF e_machine 0xb7).
        if grep -qx "size.arm64_built 1" "$RESULTS" && [ -f "$binary" ] && [ "$(od -An -tx1 -j18 -N1 "$binary" | tr -d ' ')" = b7 ]; then
            result "size.$function.arm64" "$(stat -c %s "$binary")"
            result "size.$function.arm64_zip" "$(zip_size "$binary")"
        else
            result "size.$function.arm64" "UNMEASURED: not built by this run (\`all\` builds it, not \`all --quick\`)"
        fi
    done
    echo "== sizes: $(grep -c '^size\..*\.x86_64 [0-9]' "$RESULTS") x86_64 binaries, $(grep -c '^size\..*\.arm64 [0-9]' "$RESULTS") arm64"
}

# ------------------------------------------------------------------ pipeline

# Storage reads per authenticated request, then the worker's throughput and what each
# webhook costs (pipeline_bench): on the embedded store and queue, then on moto (DynamoDB,
# SQS) with the limiter on Redis through the Upstash shim, priced by infra/aws-prices.tsv.
run_pipeline() {
    cargo build --release -p sellerhub-tests --bin pipeline_bench
    local bench=("$ROOT/target/release/pipeline_bench") webhooks=${PIPELINE_WEBHOOKS:-2000} rc=0
    echo "== storage reads per authenticated request"
    "${bench[@]}" reads --results "$RESULTS" >/dev/null || rc=1
    echo "== worker: embedded store and queue, the sandbox provider"
    "${bench[@]}" worker --backend embedded --webhooks "$webhooks" --results "$RESULTS" >/dev/null || rc=1
    local EMULATORS=(bash "$ROOT/infra/emulators.sh")
    start_emulators
    echo "== worker and cost per webhook: DynamoDB and SQS on moto, Upstash shim on Redis"
    "${bench[@]}" worker --backend moto --webhooks "${PIPELINE_MOTO_WEBHOOKS:-200}" --results "$RESULTS" \
        --prices "$ROOT/infra/aws-prices.tsv" >/dev/null || rc=1
    "${EMULATORS[@]}" stop
    EMULATORS_STARTED=false
    return "$rc"
}

# ------------------------------------------------------------------ all

# Runs a section of `all` in a subshell (its `die` ends only the section, and it cleans up
# after itself); one that fails is recorded and the others still run.
section() {
    local name=$1
    shift
    if ! (trap cleanup EXIT; "$@"); then
        echo "bench: the $name section failed; its rows say so" >&2
        result "section.$name.failed" 1
    fi
}

# The load from others: load average and what else runs, sampled at the start and end.
machine() {
    result machine.cores "$(nproc)"
    result machine.memory_gib "$(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
    result machine.cpu "\"$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)\""
    result "machine.load_$1" "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
}

run_all() {
    echo "bench: results in $RESULTS"
    result bench.date "$(date -u +%Y-%m-%dT%H:%MZ)"
    result bench.command "\"bash infra/bench.sh all${QUICK:+ --quick}\""
    result bench.commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    machine start
    local dir all_functions=()
    for dir in functions/*/; do all_functions+=(-p "$(basename "$dir")"); done
    echo "== release builds: every function (release profile), the runner (runner profile), the bench binaries"
    cargo build --release "${all_functions[@]}"
    cargo build --profile runner -p local --bin local
    cargo build --release -p sellerhub-tests --bin lambda_coldstart --bin limiter_bench \
        --bin ingest_bench --bin sse_bench --bin pipeline_bench
    if [ -z "${QUICK:-}" ]; then
        section arm64 build_arm64 "${all_functions[@]}"
    fi
    section coldstarts run_coldstarts
    section sizes run_sizes
    section ingest run_ingest
    section sse run_sse
    section pipeline run_pipeline
    machine end
    bash "$ROOT/infra/bench-table.sh" "$RESULTS"
}

if $all; then
    run_all
    exit 0
fi

if $coldstarts; then run_coldstarts; fi
if $ingest; then run_ingest; fi
if $sse; then run_sse; fi
