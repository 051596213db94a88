#!/usr/bin/env bash
# The test command (README, CI): installs what is missing, then checks format,
# lints, builds the ferry binary the end-to-end tests spawn, and runs every test.
# Exits non-zero on the first failure.
#
# Everything is built once, for the host's gnu target with glibc linked in
# statically (target/<triple>/debug): the end-to-end tests, the clients and the
# pod test all use that one `ferry`, and the image the pod test runs is built
# from it, so CI compiles the workspace once instead of a second time in
# release. (scripts/image.sh and the Containerfile build release images.)
set -euo pipefail

cd "$(dirname "$0")/.."

bash scripts/setup.sh
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

started=$(date +%s)
last=$started
step() {
    local now
    now=$(date +%s)
    printf '\n==> [%d s; last step %d s] %s\n' $((now - started)) $((now - last)) "$*" >&2
    last=$now
}

triple=$(rustc -vV | sed -n 's/^host: //p')
case "$triple" in
    *-linux-gnu) ;;
    *) echo "test.sh: host target $triple is not a linux gnu target" >&2; exit 1 ;;
esac
# With an explicit target, these flags reach our crates and not build scripts
# or proc macros (which cannot link statically).
export CARGO_BUILD_TARGET=$triple
flags_var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
export "$flags_var=-C target-feature=+crt-static"
export FERRY_BIN=$PWD/target/$triple/debug/ferry
# A build from a fresh clone gains nothing from incremental compilation's
# caches and pays for writing them.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

# The clients' virtualenvs (Airflow, Dagster: pip downloads, mostly waiting on
# the network) are made while Rust compiles.
clients_log=$(mktemp)
bash scripts/test-clients.sh --prepare >"$clients_log" 2>&1 &
clients_prep=$!
trap 'kill "$clients_prep" 2>/dev/null || true; rm -f "$clients_log"' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build -p ferry (the end-to-end tests spawn $FERRY_BIN)"
cargo build -p ferry
if readelf -d "$FERRY_BIN" | grep -q '(NEEDED)'; then
    echo "test.sh: $FERRY_BIN still needs shared libraries" >&2
    exit 1
fi

step "cargo test"
# Two test threads: each end-to-end test runs PostgreSQL, etcd and several
# ferry processes, and the machine has two cores.
cargo test --workspace -- --test-threads=2

step "clients: Python package, Airflow provider, Argo and Dagster examples"
if ! wait "$clients_prep"; then
    cat "$clients_log" >&2
    echo "test.sh: preparing the clients' virtualenvs failed (above)" >&2
    exit 1
fi
cat "$clients_log" >&2
bash scripts/test-clients.sh

step "Helm chart: lint, golden renderings, kubernetes-validate, CRD schemas (scripts/test-chart.sh)"
bash scripts/test-chart.sh

step "image from the static ferry, chart as pods under podman (scripts/test-pods.sh)"
FERRY_STATIC_BIN=$FERRY_BIN bash scripts/test-pods.sh

step "all stages passed"
