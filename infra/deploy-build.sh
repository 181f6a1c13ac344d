#!/usr/bin/env bash
# The deploy build, checked without AWS: what docs/DEPLOY.md runs before `sam deploy`.
#
#   bash infra/deploy-build.sh install   # idempotent: aws-sam-cli and cargo-lambda (with zig,
#                                        # its arm64 linker) in infra/.venv-deploy, and Rust's
#                                        # aarch64-unknown-linux-gnu target (rustup)
#   bash infra/deploy-build.sh check     # after a `sam build`: what `sam deploy` would ship
#                                        # (infra/deploy_check.py), uploaded by `sam package`
#                                        # to S3 on moto (infra/emulators.sh) and read back;
#                                        # prints each function's zip size
#   bash infra/deploy-build.sh release-one   # RELEASE_FUNCTION (questions) alone in the release
#                                        # profile for arm64, held to the 8 MB budget
#   bash infra/deploy-build.sh           # install, `sam validate --lint`, `sam build`, check
#
# Environment:
#   LAMBDA_PROFILE=ci   as CI does: `sam build` with the release profile lightened for speed
#                       (opt-level 0, no LTO: it proves every function builds and links for
#                       arm64 and what SAM makes of it, not the binaries' size), then one
#                       function, RELEASE_FUNCTION (default questions, the largest), in the
#                       real release profile, held to the 8 MB budget. Default: `sam build`
#                       in the release profile of Cargo.toml (opt-level "z", fat LTO)
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

# What `sam deploy` would ship, without AWS: the config and the build folders, then the
# real `sam package` (the upload step of `sam deploy`, same template lookup) into S3 on
# moto, and the zips it uploaded read back.
cmd_check() {
    [[ -x "$VENV/bin/python" ]] || die "no venv at $VENV (run: $0 install)"
    SAM_CLI_TELEMETRY=0 "$VENV/bin/python" "$ROOT/infra/deploy_check.py" built

    local emulators=(bash "$ROOT/infra/emulators.sh") state
    "${emulators[@]}" install
    state="$(mktemp -d "${TMPDIR:-/tmp}/sellerhub-deploy-check.XXXXXX")"
    # A subshell: its EXIT trap stops the emulators it started, whatever happens.
    (
        export SELLERHUB_EMULATORS_DIR="$state"
        trap '"${emulators[@]}" stop >/dev/null 2>&1 || true; rm -rf -- "$SELLERHUB_EMULATORS_DIR"' EXIT
        eval "$("${emulators[@]}" start)"
        export AWS_ENDPOINT_URL="$MOTO_ENDPOINT" AWS_ACCESS_KEY_ID=moto AWS_SECRET_ACCESS_KEY=moto \
            AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
        local bucket=sellerhub-deploy-check
        "$VENV/bin/python" -c "import boto3, sys; boto3.client('s3').create_bucket(Bucket=sys.argv[1])" "$bucket"
        sam package --config-file infra/samconfig.toml --s3-bucket "$bucket" --s3-prefix sellerhub \
            --output-template-file .aws-sam/packaged.yaml --no-progressbar >&2
        SAM_CLI_TELEMETRY=0 "$VENV/bin/python" "$ROOT/infra/deploy_check.py" packaged .aws-sam/packaged.yaml
    )
}

# One function in the real release profile, for arm64: its bootstrap must stay within the
# size budget (Cargo.toml's [profile.release]).
cmd_release_one() {
    local function="${RELEASE_FUNCTION:-questions}" budget=8000000 target_dir bootstrap size
    PATH="$VENV/bin:$PATH" cargo lambda build --release --arm64 --bin "$function"
    target_dir="$(cargo metadata --format-version 1 --no-deps |
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    bootstrap="$target_dir/lambda/$function/bootstrap"
    size="$(stat -c %s "$bootstrap")"
    log "$function in the release profile, arm64: bootstrap $size bytes (budget $budget)"
    ((size <= budget)) || die "$bootstrap is $size bytes, over the $budget-byte budget"
}

cmd_all() {
    timed "install" cmd_install
    timed "sam validate --lint" sam validate --lint --config-file infra/samconfig.toml
    if [[ "${LAMBDA_PROFILE:-release}" == ci ]]; then
        log "LAMBDA_PROFILE=ci: sam build in the release profile at opt-level 0, without LTO"
        (
            export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=off \
                CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
            timed "sam build" sam build --config-file infra/samconfig.toml
        )
        timed "check" cmd_check
        timed "release profile, ${RELEASE_FUNCTION:-questions} only" cmd_release_one
    else
        timed "sam build" sam build --config-file infra/samconfig.toml
        timed "check" cmd_check
    fi
}

case "${1:-all}" in
install) cmd_install ;;
check) cmd_check ;;
release-one) cmd_release_one ;;
all) cmd_all ;;
*)
    echo "usage: $0 [install|check|release-one|all]" >&2
    exit 2
    ;;
esac
