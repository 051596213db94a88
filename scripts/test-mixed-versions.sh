#!/usr/bin/env bash
# Adjacent versions during a rolling upgrade (issue 16): builds `ferry` from
# the previous release's commit (default below; or the first argument) in a
# worktree of its own, then runs tests/tests/mixed_versions_e2e.rs with it as
# FERRY_PREVIOUS_BIN: a previous worker against this coordinator, this worker
# against a previous coordinator, and both kinds of worker in one job.
# Not part of .ci/run (the second build takes ~6 minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."

# The last commit released before the planning work (issue 14).
previous=${1:-b76bcf4}
cache=${FERRY_PREVIOUS_DIR:-target/previous}
tree="$cache/tree-$previous"
bin="$cache/target/debug/ferry"

if [ ! -x "$cache/bin-$previous" ]; then
    git rev-parse --verify --quiet "$previous^{commit}" >/dev/null || {
        echo "error: commit $previous is not in this clone: fetch it, or pass another commit" >&2
        exit 2
    }
    rm -rf "$tree"
    mkdir -p "$cache"
    git worktree prune
    git worktree add --detach "$tree" "$previous" >&2
    CARGO_TARGET_DIR="$PWD/$cache/target" cargo build --manifest-path "$tree/Cargo.toml" -p ferry >&2
    cp "$bin" "$cache/bin-$previous"
    git worktree remove --force "$tree"
fi

cargo build -p ferry
FERRY_PREVIOUS_BIN="$PWD/$cache/bin-$previous" \
    cargo test -p ferry-tests --test e2e -- mixed_versions_e2e:: --ignored --test-threads=1
