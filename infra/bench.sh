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

cargo build --release -p sellerhub-tests --bin lambda_coldstart --bin limiter_bench
for function in "${functions[@]}"; do
    echo "== $function"
    "$ROOT/target/release/lambda_coldstart" "$function" "${RUNS:-20}" --moto
done

echo "== rate limiter: round trips and check latency (redis-server through the Upstash REST shim)"
"$ROOT/target/release/limiter_bench" 5 1000 --check
