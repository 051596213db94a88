#!/usr/bin/env bash
# The test command (README, CI): installs what is missing, then checks format,
# lints, builds the ferry binary the end-to-end tests spawn, and runs every test.
# Exits non-zero on the first failure.
set -euo pipefail

cd "$(dirname "$0")/.."

bash scripts/setup.sh
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build -p ferry (the end-to-end tests spawn target/debug/ferry)"
cargo build -p ferry

step "cargo test"
# Two test threads: each end-to-end test runs PostgreSQL, etcd and several
# ferry processes, and the machine has two cores.
cargo test --workspace -- --test-threads=2

step "clients: Python package, Airflow provider, Argo and Dagster examples"
bash scripts/test-clients.sh

step "Helm chart: lint, golden renderings, kubernetes-validate, CRD schemas (scripts/test-chart.sh)"
bash scripts/test-chart.sh

step "static release binary (once), image, chart as pods under podman (scripts/test-pods.sh)"
static_bin=$(bash scripts/static-build.sh | tail -n1)
FERRY_STATIC_BIN=$static_bin bash scripts/test-pods.sh
