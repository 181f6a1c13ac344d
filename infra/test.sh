#!/usr/bin/env bash
# THE test command: bash infra/test.sh [extra cargo test args]
#
# Installs what the tests need if missing (infra/emulators.sh install: moto + cfn-lint in
# infra/.venv, redis-server and chromium from Debian, playwright-core in tests/browser),
# starts moto and Redis on 127.0.0.1, lints template.yaml, and runs every test of the
# workspace against those emulators. The
# emulators are stopped on exit, whatever happens. Extra arguments go to `cargo test`,
# e.g. `bash infra/test.sh -- --nocapture` or `bash infra/test.sh --test template`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

EMULATORS=(bash "$ROOT/infra/emulators.sh")

"${EMULATORS[@]}" install

# Our own state dir (unless the caller chose one), so this run never reuses or stops
# emulators someone else started. It holds their logs: kept when the run fails.
own_state=""
if [[ -z "${SELLERHUB_EMULATORS_DIR:-}" ]]; then
    SELLERHUB_EMULATORS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sellerhub-test.XXXXXX")"
    own_state="$SELLERHUB_EMULATORS_DIR"
fi
export SELLERHUB_EMULATORS_DIR

cleanup() {
    local rc=$?
    "${EMULATORS[@]}" stop || true
    if [[ $rc -eq 0 && -n "$own_state" ]]; then
        rm -rf -- "$own_state"
    elif [[ $rc -ne 0 ]]; then
        echo "test.sh: failed (exit $rc); emulator logs in $SELLERHUB_EMULATORS_DIR" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

env_lines="$("${EMULATORS[@]}" start)"
eval "$env_lines"
# Set means configured: the suites that use moto/Redis must then fail, never skip, when
# the emulator is gone. Likewise the schemathesis run against the local runner.
export MOTO_ENDPOINT REDIS_URL
SCHEMATHESIS="$("${EMULATORS[@]}" schemathesis)"
export SCHEMATHESIS
# The browser the inbox page is walked in (tests/tests/browser_inbox.rs): set, so that test
# fails rather than skips when it cannot run.
CHROMIUM="$("${EMULATORS[@]}" chromium)"
export CHROMIUM
echo "emulators: MOTO_ENDPOINT=$MOTO_ENDPOINT REDIS_URL=$REDIS_URL"

echo "== cfn-lint template.yaml"
"$ROOT/infra/.venv/bin/cfn-lint" template.yaml
echo "cfn-lint: template.yaml ok"

# Every target of every crate (tests/ is not a default member), unless the arguments
# select packages or targets themselves: cargo takes the union, so `--all-targets --test x`
# would run everything.
packages=(--workspace)
targets=(--all-targets)
for arg in "$@"; do
    [[ "$arg" == -- ]] && break
    case "$arg" in
    -p | -p* | --package | --package=* | --workspace) packages=() ;;
    --all-targets | --lib | --bins | --bin | --bin=* | --tests | --test | --test=* | --benches | \
        --bench | --bench=* | --examples | --example | --example=* | --doc) targets=() ;;
    esac
done
echo "== cargo test ${packages[*]} ${targets[*]} $*"
cargo test "${packages[@]}" "${targets[@]}" "$@"
