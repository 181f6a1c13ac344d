#!/usr/bin/env bash
# Benchmarks: each function's release binary under the Lambda Runtime API emulator —
# init time (spawn -> first GET /next), first invocation, peak RSS, size — as medians over
# RUNS cold starts, with DynamoDB and SQS on moto; then the rate limiter's round trips per
# check and check latency against Redis (limiter_bench). Loopback only, bounded.
#   bash infra/bench.sh            # every function under functions/
#   RUNS=50 bash infra/bench.sh health
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EMULATORS=(bash "$ROOT/infra/emulators.sh")

"${EMULATORS[@]}" install
export SELLERHUB_EMULATORS_DIR="${SELLERHUB_EMULATORS_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sellerhub-bench.XXXXXX")}"
trap '"${EMULATORS[@]}" stop || true' EXIT
eval "$("${EMULATORS[@]}" start)"
export MOTO_ENDPOINT REDIS_URL

functions=("$@")
if [ ${#functions[@]} -eq 0 ]; then
    for dir in functions/*/; do functions+=("$(basename "$dir")"); done
fi

# Throwaway secrets for the bench's functions (never used anywhere else).
random() { head -c "$1" /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '='; }
secrets=(
    "SESSION_SIGNING_KEY=$(random 32)"
    "GRANT_ENCRYPTION_KEY=bench:$(head -c 32 /dev/urandom | base64 -w0)"
    "MERCADOLIVRE_CLIENT_SECRET=$(random 24)"
    "MERCADOLIVRE_CLIENT_ID=123456"
    "MERCADOLIVRE_REDIRECT_URI=https://api.example.com/prod/auth/callback"
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
        token-refresher) echo "--upstash" ;;
        *) echo "" ;;
    esac
}

cargo build --release -p sellerhub-tests --bin lambda_coldstart --bin limiter_bench
for function in "${functions[@]}"; do
    echo "== $function"
    # shellcheck disable=SC2046 # the arguments are words on purpose
    "$ROOT/target/release/lambda_coldstart" "$function" "${RUNS:-20}" --moto \
        $(bench_args "$function") "${secrets[@]}"
done

echo "== rate limiter: round trips and check latency (redis-server through the Upstash REST shim)"
"$ROOT/target/release/limiter_bench" 5 1000 --check
