#!/usr/bin/env bash
# Ferry's scheduler benchmark (issue 4, part 2): 100,000 chunks leased and
# completed over real gRPC by 1,000 simulated workers, with MemoryStore and
# with EtcdStore (a throwaway etcd from /usr/bin/etcd), no database.
# Builds bench/sched in release mode, runs it, prints the table and writes it
# into bench/SCHED-RESULTS.md (between the generated-section markers).
#
#   bash bench/sched.sh                                   # both stores, ~2-8 min
#   bash bench/sched.sh --store memory                    # one store
#   bash bench/sched.sh --chunks 10000 --workers 100      # smaller
#   bash bench/sched.sh --no-log                          # coordinator logging off
#   bash bench/sched.sh --channels 8                      # workers share 8 connections
#   bash bench/sched.sh --scale                           # issue 16: 1,000,000 chunks, 10,000 workers (1,250 processes × 8)
#   bash bench/sched.sh --scale --slots 1 --channels 1250 # the same workers each registered on its own
#   bash bench/sched.sh --scale --lease-chunks 20000      # the same plan, lease phases sampled
#
# Extra flags go to the binary (`target/release/ferry-sched-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Both benchmarks want the whole (2-core) machine: do not skew bench/run.sh, nor be skewed by it.
while pgrep -f 'bench/run\.sh' >/dev/null; do
    echo "sched.sh: bench/run.sh is running; waiting for it to finish (Ctrl-C to give up)" >&2
    sleep 30
done

cargo build --release -p ferry-sched-bench
exec target/release/ferry-sched-bench --results bench/SCHED-RESULTS.md "$@"
