#!/usr/bin/env bash
# Cost as the table grows (issue 16, item 5): `ferry local --workers 2` on 1, 5 and 20 million
# rows of `items` (the generator of shared/bench/peers.sh; tables items_1m, items_5m, items_20m in
# one source database), each size interleaved with the single binary `psql | psql` COPY pipe of
# the same table, in rounds (pipe-1m local2-1m pipe-5m local2-5m ...). Reuses bench/run.sh's
# cluster, measurement and checks (it sources run.sh for its functions). Prints the table and
# writes it to $OUT/growth.md and into bench/RESULTS.md's section "Cost as the table grows" (between
# its generated-table markers; bench/run.sh keeps that section when it rewrites RESULTS.md). A run
# of other sizes or fewer than 3 rounds writes $OUT/RESULTS.md instead (RESULTS=FILE to choose).
#
#   bash bench/growth.sh                              # 1m 5m 20m, 3 rounds
#   SIZES="1 5" ROUNDS=1 bash bench/growth.sh         # quick
#   DROP=1 bash bench/growth.sh                       # remove the cluster ($WORK) at the end
#
# Knobs: SIZES (millions of rows, default "1 5 20"), ROUNDS (default 3), FERRY_BIN (default
# target/release/ferry), WORK (default /tmp/ferry-growth: its own cluster, not run.sh's),
# OUT (default bench/out/growth), KEEP=1 (leave the cluster running), DROP=1 (delete $WORK).
# 50 million rows need ~6 GB of source table, 6 GB of target and up to 4 GB of WAL: only with
# the disk for it (SIZES="1 5 20 50").
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
SIZES=${SIZES:-"1 5 20"}
export WORK=${WORK:-/tmp/ferry-growth} OUT=${OUT:-$BENCH/out/growth} ROUNDS=${ROUNDS:-3} ONLY=pipe ETCD=0
# shellcheck source=run.sh
source "$BENCH/run.sh"
declare -A TABLE_HASH=()
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

growth_data() {
  local db m t
  for db in src dst; do
    Q -d postgres -tc "select 1 from pg_database where datname='$db'" | grep -q 1 || Q -d postgres -c "create database $db"
  done
  Q -d src -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm"
  for m in $SIZES; do
    t=items_${m}m
    gen_table "$t" $((m * 1000000))
    Q -d dst -c "DROP TABLE IF EXISTS $t" -c "$(ddl_of "$t")"
    TABLE_HASH[$t]=$(psql -X -At -d src -c "select count(*)||':'||sum(hashtext(t::text)::bigint) from $t t")
    log "src.$t: $(psql -X -At -d src -c "select pg_size_pretty(pg_total_relation_size('$t'))")"
  done
  # prewarm the smaller tables into shared_buffers (1 GB); the 20m table (2.5 GB) is read from
  # the OS page cache, as the pipe reads it too
  for m in $SIZES; do
    ((m <= 5)) && Q -d src -c "select pg_prewarm('items_${m}m'), pg_prewarm('items_${m}m_pkey')" >/dev/null
  done
  return 0
}

main_growth() {
  log "ferry growth bench: SIZES=\"$SIZES\" ROUNDS=$ROUNDS, load average $LOAD_START"
  FERRY_BIN=${FERRY_BIN:-$REPO/target/release/ferry}
  install_deps
  ferry_binary
  trap growth_cleanup EXIT
  start_cluster
  growth_data
  local m r i
  for m in $SIZES; do
    WANT[pipe-${m}m]=1; WANT[local2-${m}m]=1
    cfg "pipe-${m}m" "items_${m}m" growth "psql COPY binary pipe, 1 stream" exec_shell "$(pipe_cmd "items_${m}m")"
    cfg "local2-${m}m" "items_${m}m" growth "ferry local --workers 2" exec_local "items_${m}m" 2
  done
  : >"$RUNS_TSV"; rm -f "$OUT/failures.md"
  for ((r = 1; r <= ROUNDS; r++)); do
    log "---- round $r/$ROUNDS"
    for i in "${!C_NAME[@]}"; do run_one "$i" "$r"; done
  done
  local load_end; load_end=$(cut -d' ' -f1-3 /proc/loadavg)
  log "load average at the end: $load_end"
  {
    echo "- Date: $STARTED to $(date -u +%Y-%m-%dT%H:%M:%SZ); load average (1, 5, 15 min) $LOAD_START at the start, $load_end at the end"
    echo "- Command: \`$( [[ $SIZES != "1 5 20" ]] && printf 'SIZES="%s" ' "$SIZES"; [[ $ROUNDS != 3 ]] && printf 'ROUNDS=%s ' "$ROUNDS"; [[ -n ${FERRY_BIN:-} ]] && printf 'FERRY_BIN=%s ' "$FERRY_BIN")bash bench/growth.sh\`"
    versions
  } >"$OUT/header.md"
  growth_report
}

# the table from $OUT (runs.tsv, header.md, logs/); REPORT_ONLY=1 runs just this
growth_report() {
  python3 "$BENCH/lib/growth_report.py" --runs "$RUNS_TSV" --logs "$OUT/logs" --header "$OUT/header.md" \
    --sizes "$SIZES" --rounds "$ROUNDS" | tee "$OUT/growth.md"
  [[ -n ${RESULTS:-} ]] || { [[ $SIZES == "1 5 20" && $ROUNDS -ge 3 ]] && RESULTS=$BENCH/RESULTS.md || RESULTS=$OUT/RESULTS.md; }
  python3 "$BENCH/lib/growth_report.py" --write-section "$RESULTS" --table "$OUT/growth.md"
  log "wrote $OUT/growth.md and its section in $RESULTS (runs: $RUNS_TSV, logs: $OUT/logs/)"
}

growth_cleanup() {
  cleanup
  if [[ -n ${DROP:-} && -z ${KEEP:-} ]]; then log "removing $WORK"; rm -rf "$WORK"; fi
}

if [[ -n ${REPORT_ONLY:-} ]]; then growth_report; exit 0; fi
main_growth
