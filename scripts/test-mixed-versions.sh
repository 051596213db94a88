#!/usr/bin/env bash
# Adjacent versions during a rolling upgrade (issue 16): builds `ferry` from
# earlier commits in worktrees of their own, then runs
# tests/tests/mixed_versions_e2e.rs with them: a previous worker against this
# coordinator, this worker against a previous coordinator, both kinds of
# worker in one job (FERRY_PREVIOUS_BIN, the release before the planning
# work), and a job handed over mid-run from a previous leader to this one and
# back (FERRY_PREVIOUS_LEADER_BIN, the last commit that kept one etcd lease
# per worker: it reads this version's store format, which the older release
# does not).
# Not part of .ci/run (each earlier build takes ~6 minutes on two cores).
#
#   bash scripts/test-mixed-versions.sh [previous-release [previous-leader]]
set -euo pipefail
cd "$(dirname "$0")/.."

# The last commit released before the planning work (issue 14).
previous=${1:-b76bcf4}
# The last commit whose coordinators registered workers under etcd leases.
previous_leader=${2:-ede2d67}
cache=${FERRY_PREVIOUS_DIR:-target/previous}

# Builds `ferry` at commit $1 (once; cached) and prints the binary's path.
build_at() {
    local commit=$1 tree="$cache/tree-$1"
    if [ ! -x "$cache/bin-$commit" ]; then
        git rev-parse --verify --quiet "$commit^{commit}" >/dev/null || {
            echo "error: commit $commit is not in this clone: fetch it, or pass another commit" >&2
            exit 2
        }
        rm -rf "$tree"
        mkdir -p "$cache"
        git worktree prune
        git worktree add --detach "$tree" "$commit" >&2
        CARGO_TARGET_DIR="$PWD/$cache/target" cargo build --manifest-path "$tree/Cargo.toml" -p ferry >&2
        cp "$cache/target/debug/ferry" "$cache/bin-$commit"
        git worktree remove --force "$tree"
    fi
    echo "$PWD/$cache/bin-$commit"
}

previous_bin=$(build_at "$previous")
previous_leader_bin=$(build_at "$previous_leader")
cargo build -p ferry
FERRY_PREVIOUS_BIN="$previous_bin" FERRY_PREVIOUS_LEADER_BIN="$previous_leader_bin" \
    cargo test -p ferry-tests --test e2e -- mixed_versions_e2e:: --ignored --test-threads=1
