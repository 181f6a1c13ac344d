#!/usr/bin/env bash
# Benchmarks: each function's release binary under the Lambda Runtime API emulator —
# init time (spawn -> first GET /next), first invocation, peak RSS, size — as medians over
# RUNS cold starts, with DynamoDB and SQS on moto. Loopback only, bounded.
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
export MOTO_ENDPOINT

functions=("$@")
if [ ${#functions[@]} -eq 0 ]; then
    for dir in functions/*/; do functions+=("$(basename "$dir")"); done
fi

cargo build --release -p sellerhub-tests --bin lambda_coldstart
for function in "${functions[@]}"; do
    echo "== $function"
    "$ROOT/target/release/lambda_coldstart" "$function" "${RUNS:-20}" --moto
done
