#!/usr/bin/env bash
# Issue 13's performance bar: Ferry across databases beside Sling and each target's own bulk
# loader, and PostgreSQL -> PostgreSQL beside Ferry before the connector work (d314f09).
# Starts its own PostgreSQL 15, MariaDB and SQLite files in a temp dir, builds what it runs,
# measures interleaved rounds, writes the markdown table and stops everything it started.
#
#   bash bench/connectors.sh                         # 1,000,000 rows, 3 rounds
#   bash bench/connectors.sh --rows 100000 --rounds 1
#
# Flags: --rows N (1000000), --rounds R (3), --out FILE (bench/RESULTS-connectors.md),
#   --pairs "pg:my my:pg pg:sq sq:pg pg:pg" (all), --old-commit SHA (d314f09),
#   --workers N (2), --old-cross (ferry-old on the cross-database pairs too, beside ferry).
#   Env: FERRY, FERRY_OLD (prebuilt binaries: no build), VENV (/tmp/ferry-connbench-venv), OLD_DIR (/tmp/ferry-connbench-old).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROWS=1000000 ROUNDS=3 WORKERS=2 OLD_COMMIT=d314f09 OLD_CROSS=0
OUT=$ROOT/bench/RESULTS-connectors.md
PAIRS="pg:my my:pg pg:sq sq:pg pg:pg"
CMDLINE="bash bench/connectors.sh $*"
while (($#)); do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --pairs) PAIRS=$2; shift 2 ;;
    --old-commit) OLD_COMMIT=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --old-cross) OLD_CROSS=1; shift ;;
    *) echo "unknown flag $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
VENV=${VENV:-/tmp/ferry-connbench-venv}
OLD_DIR=${OLD_DIR:-/tmp/ferry-connbench-old}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
WORK=$(mktemp -d /tmp/ferry-connbench.XXXXXX)
chmod 755 "$WORK"
source "$ROOT/bench/lib/conn-servers.sh"
source "$ROOT/bench/lib/conn-data.sh"
cleanup() {
  stop_servers
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- tools
# FERRY / FERRY_OLD: binaries built beforehand (skip the builds; the disk here is small)
if [[ -z ${FERRY:-} ]]; then
  log "building ferry (release) at $(git -C "$ROOT" rev-parse --short HEAD)"
  (cd "$ROOT" && cargo build --release -q -p ferry)
  FERRY=$ROOT/target/release/ferry
fi
if [[ ($PAIRS == *pg:pg* || $OLD_CROSS == 1) && -z ${FERRY_OLD:-} ]]; then
  if [[ ! -d $OLD_DIR ]]; then
    git -C "$ROOT" worktree add --detach "$OLD_DIR" "$OLD_COMMIT" >/dev/null
  fi
  log "building ferry (release) at $OLD_COMMIT in $OLD_DIR"
  (cd "$OLD_DIR" && git checkout -q --detach "$OLD_COMMIT" &&
    CARGO_TARGET_DIR=$OLD_DIR-target cargo build --release -q -p ferry)
  FERRY_OLD=$OLD_DIR-target/release/ferry
fi
if [[ ! -x $VENV/bin/python ]]; then python3 -m venv "$VENV"; fi
# the binary inside sling-linux-amd64, as /work/shared/bench/peers.sh runs it
"$VENV/bin/pip" install -q --disable-pip-version-check "sling-linux-amd64==1.4.11"
SLING_BIN=$("$VENV/bin/python" -c 'import sling_linux_amd64 as s; print(s.SLING_BIN)')
for t in sqlite3 mariadb psql /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done

# ---------------------------------------------------------------- servers and data
start_pg
start_mariadb
make_data

# sling's name for a database's connection and its items table
sling_url() {
  case $1 in
    pg) echo "postgresql://postgres@127.0.0.1:$PG_PORT/$2?sslmode=disable" ;;
    *) url "$1" "$2" ;;
  esac
}
sling_table() {
  case $1 in pg) echo public.items ;; my) echo "$2.items" ;; sq) echo main.items ;; esac
}

# tool_cmd TOOL SRC DST: the command line one run executes.
tool_cmd() {
  local tool=$1 s=$2 d=$3
  case $tool in
    ferry | ferry-old)
      local bin=$FERRY
      [[ $tool == ferry-old ]] && bin=$FERRY_OLD
      echo "$bin local --source '$(url "$s" src)' --target '$(url "$d" dst)'" \
        "--query 'SELECT * FROM items' --table items --workers $WORKERS"
      ;;
    sling)
      echo "SLING_DISABLE_TELEMETRY=true SLING_HOME_DIR=$WORK/slinghome" \
        "SRC_DB='$(sling_url "$s" src)' DST_DB='$(sling_url "$d" dst)'" \
        "$SLING_BIN run --src-conn SRC_DB --src-stream $(sling_table "$s" src)" \
        "--tgt-conn DST_DB --tgt-object $(sling_table "$d" dst) -m truncate"
      ;;
    loader) loader_cmd "$s" "$d" ;;
  esac
}

RUNS=$WORK/runs.tsv
: >"$RUNS"
mkdir -p "$WORK/logs"
# run_one ROUND PAIR TOOL: empties the target, runs the tool under /usr/bin/time, appends
# round, pair, tool, rows, seconds, tool CPU s, database CPU s, rows landed to $RUNS.
run_one() {
  local round=$1 pair=$2 tool=$3 s=${2%:*} d=${2#*:} cmd tf lf c0 c1 n rc=0
  cmd=$(tool_cmd "$tool" "$s" "$d")
  tf=$WORK/time.txt lf=$WORK/logs/$round-${pair/:/-}-$tool.log
  empty_target "$d"
  sync
  pg_quiet
  c0=$(db_cpu)
  echo "$cmd" >"$lf"
  /usr/bin/time -f '%e %U %S' -o "$tf" bash -c "$cmd" >>"$lf" 2>&1 || rc=$?
  pg_quiet
  c1=$(db_cpu)
  n=$(count "$d" dst)
  wall=nan u=0 sy=0
  read -r wall u sy < <(grep -E '^[0-9.]+ [0-9.]+ [0-9.]+$' "$tf") || true
  [[ $rc == 0 ]] || { log "FAILED ($rc): $cmd"; tail -5 "$lf" >&2; wall=nan; }
  printf '%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\n' "$round" "$pair" "$tool" "$ROWS" "$wall" \
    "$(echo "$u + $sy" | bc)" "$(echo "$c1 - $c0" | bc)" "$n" | tee -a "$RUNS" >&2
}

# ---------------------------------------------------------------- rounds
TOOLS=(ferry sling loader)
if [[ $OLD_CROSS == 1 ]]; then TOOLS=(ferry ferry-old sling loader); fi
for ((r = 1; r <= ROUNDS; r++)); do
  log "round $r/$ROUNDS (load $(cut -d' ' -f1 /proc/loadavg))"
  for pair in $PAIRS; do
    if [[ $pair == pg:pg ]]; then order=(ferry ferry-old); else order=("${TOOLS[@]}"); fi
    # rotate the order every round so no tool always runs first
    for ((i = 0; i < ${#order[@]}; i++)); do
      run_one "$r" "$pair" "${order[$(((i + r - 1) % ${#order[@]}))]}"
    done
  done
done
cp "$RUNS" "${OUT%.md}.tsv"

# ---------------------------------------------------------------- report
{
  echo "# Ferry across databases: beside Sling and the targets' own loaders (issue 13)"
  echo
  echo "Produced by \`$CMDLINE\` at commit $(git -C "$ROOT" rev-parse --short HEAD)" \
    "on $(date -u +%Y-%m-%d), $ROWS rows, $ROUNDS rounds, interleaved (the tool order rotates" \
    "every round); raw runs in \`$(basename "${OUT%.md}.tsv")\`."
  echo
  echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), shared with other" \
    "engineers' builds; load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- PostgreSQL $(psql -XqAt -d postgres -c 'show server_version') (fsync=off," \
    "shared_buffers=512MB); $(mariadbd --version | awk '{print $3}') (innodb_buffer_pool_size=1G," \
    "flush at commit=1, no binlog); SQLite $(sqlite3 --version | cut -d' ' -f1);" \
    "sling $("$SLING_BIN" --version 2>&1 | tail -1); ferry local --workers $WORKERS"
  echo "- loaders: MariaDB \`LOAD DATA LOCAL INFILE\` (mariadb CLI), PostgreSQL \`\\copy FROM\`" \
    "(psql), SQLite \`.import\` (.mode tabs; it cannot write NULL, so note is '' there), each from" \
    "a tab-separated file exported before the rounds (the export is not timed)"
  echo "- tool CPU: user+system of the tool's process (/usr/bin/time; for SQLite targets and" \
    "sources the database work happens inside the tool); db CPU: PostgreSQL (all backends) plus" \
    "mariadbd during the run"
  echo
  python3 "$ROOT/bench/lib/conn_report.py" "$RUNS"
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
