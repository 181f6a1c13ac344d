#!/usr/bin/env bash
# The deploy build, checked without AWS: what docs/DEPLOY.md runs before `sam deploy`.
#
#   bash infra/deploy-build.sh install   # idempotent: aws-sam-cli and cargo-lambda (with zig,
#                                        # its arm64 linker) in infra/.venv-deploy, and Rust's
#                                        # aarch64-unknown-linux-gnu target (rustup)
#   bash infra/deploy-build.sh check     # checks .aws-sam/build after a `sam build`
#                                        # (infra/deploy_check.py) and prints the zip sizes
#   bash infra/deploy-build.sh           # install, `sam validate --lint`, `sam build`, check
#
# Environment:
#   LAMBDA_PROFILE=ci   build with the release profile lightened for speed (opt-level 0, no
#                       LTO), as CI does: it proves every function builds and links for arm64
#                       and what SAM makes of it, not the binaries' size or speed. Default:
#                       the release profile of Cargo.toml (opt-level "z", fat LTO)
#   SELLERHUB_DEPLOY_VENV   the venv (default infra/.venv-deploy)
#
# Each step prints how long it took.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SELLERHUB_DEPLOY_VENV:-$ROOT/infra/.venv-deploy}"

# Pinned: the versions this project is checked with.
SAM_VERSION=1.170.0
CARGO_LAMBDA_VERSION=1.9.2
ARM64_TARGET=aarch64-unknown-linux-gnu

log() { printf '[deploy-build] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# timed LABEL CMD...: runs CMD, then prints how long it took.
timed() {
    local label="$1" started=$SECONDS
    shift
    "$@"
    log "$label: $((SECONDS - started)) s"
}

venv_ok() {
    [[ -x "$VENV/bin/sam" && -x "$VENV/bin/cargo-lambda" ]] || return 1
    "$VENV/bin/python" - "$SAM_VERSION" "$CARGO_LAMBDA_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("aws-sam-cli"), version("cargo-lambda")) == (sys.argv[1], sys.argv[2]) else 1)
PY
}

cmd_install() {
    if venv_ok; then
        log "venv $VENV: aws-sam-cli $SAM_VERSION and cargo-lambda $CARGO_LAMBDA_VERSION already installed"
    else
        local python="${PYTHON:-python3}"
        command -v "$python" >/dev/null || die "$python not found (needed for the SAM CLI venv)"
        [[ -x "$VENV/bin/python" ]] || "$python" -m venv "$VENV" ||
            die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        log "installing aws-sam-cli==$SAM_VERSION cargo-lambda==$CARGO_LAMBDA_VERSION into $VENV (PyPI)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "aws-sam-cli==$SAM_VERSION" "cargo-lambda==$CARGO_LAMBDA_VERSION" >&2
        venv_ok || die "the venv at $VENV is still incomplete after pip install"
    fi
    # cargo-lambda would add the target itself; asked here so that a failure says what it is.
    if ! rustup target list --installed | grep -qx "$ARM64_TARGET"; then
        log "adding Rust's $ARM64_TARGET standard library (rustup)"
        rustup target add "$ARM64_TARGET" >&2 ||
            die "rustup target add $ARM64_TARGET failed: arm64 Lambda binaries need Rust's standard library for that target (zig links them, but does not provide it)"
    fi
}

# The SAM CLI without telemetry, finding cargo-lambda on PATH.
sam() {
    PATH="$VENV/bin:$PATH" SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" "$@"
}

cmd_check() {
    [[ -x "$VENV/bin/python" ]] || die "no venv at $VENV (run: $0 install)"
    SAM_CLI_TELEMETRY=0 "$VENV/bin/python" "$ROOT/infra/deploy_check.py"
}

cmd_all() {
    timed "install" cmd_install
    timed "sam validate --lint" sam validate --lint --config-file infra/samconfig.toml
    if [[ "${LAMBDA_PROFILE:-release}" == ci ]]; then
        log "LAMBDA_PROFILE=ci: the release profile at opt-level 0, without LTO"
        export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=off \
            CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
    fi
    timed "sam build" sam build --config-file infra/samconfig.toml
    timed "check" cmd_check
}

case "${1:-all}" in
install) cmd_install ;;
check) cmd_check ;;
all) cmd_all ;;
*)
    echo "usage: $0 [install|check|all]" >&2
    exit 2
    ;;
esac
