#!/usr/bin/env bash
# Ferry benchmark, part 1 of issue 4: Ferry beside the peers (psql COPY pipe, pgcopydb, Sling)
# on this machine, in one run. Idempotent: installs what it needs, (re)uses a throwaway
# PostgreSQL 15 cluster, generates the data once, runs every config interleaved in rounds
# (A B C A B C ...), checks every run, prints the tables and writes RESULTS.md.
#
#   bash bench/run.sh                                   # full run: 5,000,000 + 500,000 rows, 3 rounds
#   ROWS=200000 WIDE_ROWS=20000 ROUNDS=1 bash bench/run.sh   # quick smoke run
#   ONLY="pipe local2 dist" bash bench/run.sh           # a subset (config or group names, see below)
#   ROUNDS=7 ONLY=obs bash bench/run.sh                 # telemetry cost: local2 with metrics+tracing on vs off
#   KEEP=1 bash bench/run.sh                            # leave PostgreSQL (and etcd) running at the end
#
# Knobs (environment):
#   ROWS       rows of the narrow `items` table (default 5000000)
#   WIDE_ROWS  rows of the wide `wide` table, 2 KB text per row (default 500000)
#   ROUNDS     rounds; every config runs once per round, medians are reported (default 3)
#   ONLY       configs or groups to run (default: all). Groups: narrow, wide, mem, ferry, peers,
#              obs (local2 and local2-obs), keyless (the keyless table `heap` beside `items`), chunkcost.
#              Configs: pipe pipe-nopk local1 local2 local4 dist local2-replace dist-replace
#                       keyless-local2 keyless-dist keyless-pipe2
#                       pgcopydb pgcopydb-clone sling wide-pipe wide-local2 wide-dist wide-local2-replace
#                       mem-local mem-dist mem-local-wide mem-dist-wide tls-local2 tls-dist local2-obs
#              Group tls: local2 tls-local2 dist tls-dist (PostgreSQL over TLS against plaintext)
#              Group obs: local2 local2-obs (metrics and traces on against off)
#              Group concur: fixed1 fixed2 fixed4 fixed8 (`--workers N --fixed-workers`) against
#                adaptive8 (`--workers 8`: adaptive concurrency below 8), chunks of CONCUR_CHUNK rows
#              Group keyless: `heap` (the `items` rows, no primary key: Ferry splits it into ctid block
#                ranges) beside `items` with its key, and two psql pipes over ctid halves of `heap`
#              Group chunkcost: the per-chunk and per-job cost (issue 16 item 3): pipe, pipe-nopk, local1,
#                local2-replace, dist, keyless-dist, keyless-pipe2
#   KEEP=1     leave the cluster and etcd running
#   FRESH=1    re-initdb the cluster (and regenerate the data)
#   ETCD       auto (default): run the distributed coordinator with --etcd when its --help lists it;
#              0: never; 1: require it
#   CONCUR_CHUNK  --chunk-size of the concur group (default 50000)
#   DIST_CONCURRENCY  --concurrency of each of the 2 distributed workers (default 1)
#   FERRY_BIN  the ferry binary (default target/release/ferry; built with cargo if missing,
#              BUILD=1 forces `cargo build --release -p ferry`)
#   PGPORT_BENCH  PostgreSQL port (default 55433, or a free port if 55433 is taken)
#   WORK       scratch dir for cluster, venv, etcd (default /tmp/ferry-bench)
#   OUT        logs, runs.tsv, table.md (default bench/out, git-ignored)
#   REPORT_ONLY=1  only rewrite the report from the last run's $OUT (e.g. after changing summarize.py)
#   RESULTS    where the report goes. Default: bench/RESULTS.md for a full-size run of all configs
#              with >= 3 rounds, otherwise $OUT/RESULTS.md (so smoke runs do not overwrite it).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
ROWS=${ROWS:-5000000}
WIDE_ROWS=${WIDE_ROWS:-500000}
ROUNDS=${ROUNDS:-3}
ALL_CONFIGS="keyless-local2 keyless-dist keyless-pipe2 pipe pipe-nopk local1 local2 local4 dist local2-replace dist-replace pgcopydb pgcopydb-clone sling wide-pipe wide-local2 wide-dist wide-local2-replace mem-local mem-dist mem-local-wide mem-dist-wide tls-local2 tls-dist local2-obs fixed1 fixed2 fixed4 fixed8 adaptive8"
ONLY=${ONLY:-$ALL_CONFIGS}
DIST_CONCURRENCY=${DIST_CONCURRENCY:-1}
CONCUR_CHUNK=${CONCUR_CHUNK:-50000}
DIST_WORKERS=2
MEM_CHUNK=1000000
WORK=${WORK:-/tmp/ferry-bench}
OUT=${OUT:-$BENCH/out}
PGBIN=/usr/lib/postgresql/15/bin
PGDATA=$WORK/pgdata
PGLOG=$WORK/postgres.log
VENV=$WORK/venv
NCPU=$(nproc)
HZ=$(getconf CLK_TCK)
RUNS_TSV=$OUT/runs.tsv
CONFIGS_TSV=$OUT/configs.tsv
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
mkdir -p "$WORK" "$OUT/logs"
chmod 755 "$WORK"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
Q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_in_use() { ss -Hltn "sport = :$1" | grep -q .; }

# ---------------------------------------------------------------- selection
declare -A WANT=()
for w in $ONLY; do
  case $w in
    narrow) for c in pipe pipe-nopk local1 local2 local4 dist local2-replace dist-replace pgcopydb pgcopydb-clone sling; do WANT[$c]=1; done ;;
    wide) for c in wide-pipe wide-local2 wide-dist wide-local2-replace; do WANT[$c]=1; done ;;
    mem) for c in mem-local mem-dist mem-local-wide mem-dist-wide; do WANT[$c]=1; done ;;
    ferry) for c in local1 local2 local4 dist local2-replace dist-replace wide-local2 wide-dist wide-local2-replace mem-local mem-dist mem-local-wide mem-dist-wide; do WANT[$c]=1; done ;;
    peers) for c in pipe pipe-nopk pgcopydb pgcopydb-clone sling wide-pipe; do WANT[$c]=1; done ;;
    tls) for c in local2 tls-local2 dist tls-dist; do WANT[$c]=1; done ;;
    obs) for c in local2 local2-obs; do WANT[$c]=1; done ;;
    concur) for c in fixed1 fixed2 fixed4 fixed8 adaptive8; do WANT[$c]=1; done ;;
    keyless) for c in local2 dist keyless-local2 keyless-dist keyless-pipe2; do WANT[$c]=1; done ;;
    chunkcost) for c in pipe pipe-nopk local1 local2-replace dist keyless-dist keyless-pipe2; do WANT[$c]=1; done ;;
    *) [[ " $ALL_CONFIGS " == *" $w "* ]] || die "unknown config or group in ONLY: $w"; WANT[$w]=1 ;;
  esac
done
want() { [[ -n ${WANT[$1]:-} ]]; }
want_any() { local c; for c in "$@"; do want "$c" && return 0; done; return 1; }

# ---------------------------------------------------------------- install
install_deps() {
  local need=() p
  for p in time bc curl openssl; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  want_any pgcopydb pgcopydb-clone && { dpkg -s pgcopydb >/dev/null 2>&1 || need+=(pgcopydb); }
  if ((${#need[@]})); then
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  [[ -x $PGBIN/initdb ]] || die "PostgreSQL 15 server binaries not found in $PGBIN (apt-get install postgresql-15)"
  [[ -x /usr/bin/time ]] || die "/usr/bin/time missing"
  SLING_BIN=
  if want sling; then
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    # the sling-linux-amd64 wheel ships the binary; run it directly (the `sling` wrapper
    # would try to download a newer binary, see RESULTS-peers.md)
    "$VENV/bin/pip" show sling-linux-amd64 2>/dev/null | grep -q '^Version: 1.4.11$' ||
      "$VENV/bin/pip" install -q --disable-pip-version-check "sling-linux-amd64==1.4.11"
    SLING_BIN=$("$VENV/bin/python" -c 'import sling_linux_amd64 as s; print(s.SLING_BIN)')
  fi
  if want_any dist dist-replace wide-dist mem-dist mem-dist-wide keyless-dist; then [[ -x /usr/bin/etcd ]] || die "/usr/bin/etcd missing"; fi
  if want local2-obs; then
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/python" -c 'import grpc, opentelemetry.proto' 2>/dev/null ||
      "$VENV/bin/pip" install -q --disable-pip-version-check grpcio opentelemetry-proto
  fi
}

ferry_binary() {
  local src=${FERRY_BIN:-$REPO/target/release/ferry}
  if [[ -n ${BUILD:-} || ! -x $src ]]; then
    [[ -z ${FERRY_BIN:-} ]] || [[ -n ${BUILD:-} ]] || die "FERRY_BIN=$src is not executable"
    log "cargo build --release -p ferry"
    (cd "$REPO" && cargo build --release -p ferry) >&2
    src=$REPO/target/release/ferry
  fi
  # snapshot: a concurrent rebuild must not swap the binary in the middle of the benchmark
  FERRY=$WORK/ferry
  cp -f "$src" "$FERRY.tmp" && mv -f "$FERRY.tmp" "$FERRY"
  FERRY_SRC=$src
  FERRY_SHA=$(sha256sum "$FERRY" | cut -c1-12)
  FERRY_MTIME=$(date -u -r "$src" +%Y-%m-%dT%H:%M:%SZ)
  FERRY_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
  FERRY_DIRTY=$(cd "$REPO" && git status --porcelain --untracked-files=no -- . ':!bench' 2>/dev/null | wc -l)
  ETCD_SUPPORTED=0
  "$FERRY" coordinator --help 2>/dev/null | grep -q -- '--etcd' && ETCD_SUPPORTED=1 || true
  [[ ${ETCD:-auto} == 0 ]] && ETCD_SUPPORTED=0
  [[ ${ETCD:-auto} == 1 && $ETCD_SUPPORTED == 0 ]] && die "ETCD=1 but '$FERRY coordinator --help' lists no --etcd"
  return 0
}

# ---------------------------------------------------------------- cluster
pg_running() { su postgres -c "$PGBIN/pg_ctl -D $PGDATA status" >/dev/null 2>&1; }
start_cluster() {
  if [[ -n ${FRESH:-} && -d $PGDATA ]]; then
    pg_running && su postgres -c "$PGBIN/pg_ctl -D $PGDATA -m fast -w stop" >/dev/null
    rm -rf "$PGDATA"
  fi
  if [[ ! -f $PGDATA/PG_VERSION ]]; then
    log "initdb $PGDATA"
    rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres:postgres "$PGDATA"; chmod 700 "$PGDATA"
    # initdb refuses to run as root
    su postgres -c "$PGBIN/initdb -D $PGDATA -A trust -U postgres -E UTF8 --locale=C.UTF-8" >/dev/null
    cat >>"$PGDATA/postgresql.conf" <<EOF
# --- ferry bench settings (as in shared/bench/RESULTS-peers.md; everything else is the PG15
#     default: fsync=on, synchronous_commit=on, wal_level=replica, full_page_writes=on, autovacuum=on)
listen_addresses = '127.0.0.1'
unix_socket_directories = '/tmp'
shared_buffers = 1GB
max_wal_size = 4GB
checkpoint_timeout = 15min
log_autovacuum_min_duration = 0   # logging only: counts autovacuum jobs per run
EOF
  fi
  touch "$PGLOG"; chown postgres "$PGLOG"
  if pg_running; then
    PORT=$(sed -n 4p "$PGDATA/postmaster.pid")
    log "reusing running cluster on 127.0.0.1:$PORT"
  else
    PORT=${PGPORT_BENCH:-55433}
    if port_in_use "$PORT"; then
      [[ -z ${PGPORT_BENCH:-} ]] || die "port $PORT is taken"
      PORT=$(free_port)
    fi
    log "starting postgres on 127.0.0.1:$PORT"
    su postgres -c "$PGBIN/pg_ctl -D $PGDATA -l $PGLOG -o '-p $PORT' -w start" >/dev/null
  fi
  export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
  ensure_tls
  # plaintext configs say so: the server offers TLS, and libpq's default (prefer) would take it
  SRC_URL="postgres://postgres@127.0.0.1:$PORT/src?sslmode=disable"
  DST_URL="postgres://postgres@127.0.0.1:$PORT/dst?sslmode=disable"
  local q="sslmode=verify-full&sslrootcert=$WORK/tls/ca.pem"
  TLS_SRC_URL="postgres://postgres@localhost:$PORT/src?$q"
  TLS_DST_URL="postgres://postgres@localhost:$PORT/dst?$q"
}

# TLS on the server (a CA and a certificate for localhost made once with openssl), for the
# tls-* configs; plaintext connections stay allowed. ssl is reloadable: no restart.
ensure_tls() {
  local d=$WORK/tls
  if [[ ! -f $d/server.pem ]]; then
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=ferry-bench-ca -keyout "$d/ca.key" -out "$d/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
      -extfile "$d/server.ext" -out "$d/server.pem" >/dev/null 2>&1 || die "openssl could not make the bench certificate"
  fi
  install -o postgres -m 600 "$d/server.key" "$PGDATA/server.key"
  install -o postgres -m 644 "$d/server.pem" "$PGDATA/server.crt"
  psql -X -q -d postgres -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null
}
stop_cluster() { su postgres -c "$PGBIN/pg_ctl -D $PGDATA -m fast -w stop" >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- data
ITEMS_DDL="CREATE TABLE items (id bigint primary key, customer_id int not null, amount numeric(12,2) not null, status text not null, note text, created_at timestamptz not null)"
WIDE_DDL="CREATE TABLE wide (id bigint primary key, payload text not null)"
GEN_VERSION=1
HEAP_DDL=${ITEMS_DDL/CREATE TABLE items/CREATE TABLE heap}; HEAP_DDL=${HEAP_DDL/ primary key/}
ddl_of() { case $1 in items) echo "$ITEMS_DDL" ;; items_*) echo "${ITEMS_DDL/CREATE TABLE items/CREATE TABLE $1}" ;; heap) echo "$HEAP_DDL" ;; *) echo "$WIDE_DDL" ;; esac; }

gen_table() { # TABLE ROWS
  local t=$1 n=$2 want_tag have_tag
  want_tag="ferry-bench gen v$GEN_VERSION rows=$n"
  have_tag=$(psql -X -At -d src -c "select obj_description('public.$t'::regclass, 'pg_class')" 2>/dev/null || true)
  if [[ $have_tag != "$want_tag" ]]; then
    log "generating $n rows in src.$t"
    Q -d src -c "DROP TABLE IF EXISTS $t" -c "$(ddl_of "$t")"
    if [[ $t == items || $t == items_* ]]; then # the generator of shared/bench/peers.sh
      Q -d src -c "INSERT INTO $t
        SELECT g,
               ((g*7919) % 100000)::int,
               ((g*37) % 1000000) / 100.0,
               (ARRAY['new','paid','shipped','cancelled','refunded'])[1 + g % 5],
               md5(g::text) || '-' || lpad((g % 1000)::text, 7, '0'),          -- 40 chars
               timestamptz '2024-01-01' + (g % 31536000) * interval '1 second'
        FROM generate_series(1, $n::bigint) g"
    else # 2,048 chars of md5 hex per row: pglz cannot shrink it, so it is stored out of line (TOAST)
      Q -d src -c "INSERT INTO wide
        SELECT g, (SELECT string_agg(md5(g::text || ':' || i::text), '') FROM generate_series(1, 64) i)
        FROM generate_series(1, $n::bigint) g"
    fi
    Q -d src -c "VACUUM ANALYZE $t" -c "COMMENT ON TABLE $t IS '$want_tag'"
  fi
}

gen_data() {
  local db
  for db in src dst; do
    Q -d postgres -tc "select 1 from pg_database where datname='$db'" | grep -q 1 || Q -d postgres -c "create database $db"
  done
  NEED_ITEMS=0; NEED_WIDE=0
  want_any pipe local1 local2 local4 dist pgcopydb pgcopydb-clone sling mem-local mem-dist local2-obs keyless-local2 keyless-dist keyless-pipe2 fixed1 fixed2 fixed4 fixed8 adaptive8 && NEED_ITEMS=1
  want_any wide-pipe wide-local2 wide-dist mem-local-wide mem-dist-wide && NEED_WIDE=1
  Q -d src -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm"
  if ((NEED_ITEMS)); then
    gen_table items "$ROWS"
    Q -d dst -c "DROP TABLE IF EXISTS items" -c "$ITEMS_DDL"
    Q -d src -c "select pg_prewarm('items'), pg_prewarm('items_pkey')" >/dev/null
    ITEMS_HASH=$(psql -X -At -d src -c "select count(*)||':'||sum(hashtext(t::text)::bigint) from items t")
    ITEMS_SIZE=$(psql -X -At -d src -c "select pg_size_pretty(pg_total_relation_size('items'))||' ('||pg_total_relation_size('items')||' B: heap '||pg_size_pretty(pg_relation_size('items'))||', pkey '||pg_size_pretty(pg_indexes_size('items'))||')'")
    log "src.items: $ROWS rows, $ITEMS_SIZE"
  fi
  if want_any keyless-local2 keyless-dist keyless-pipe2; then
    # the items rows without a key, made once per items generation
    local tag; tag="keyless copy of: $(psql -X -At -d src -c "select obj_description('public.items'::regclass, 'pg_class')")"
    if [[ $(psql -X -At -d src -c "select obj_description(to_regclass('public.heap'), 'pg_class')") != "$tag" ]]; then
      log "copying src.items into the keyless src.heap"
      Q -d src -c "DROP TABLE IF EXISTS heap" -c "$HEAP_DDL" -c "INSERT INTO heap SELECT * FROM items" \
        -c "VACUUM ANALYZE heap" -c "COMMENT ON TABLE heap IS '$tag'"
    fi
    Q -d dst -c "DROP TABLE IF EXISTS heap" -c "$HEAP_DDL"
    Q -d src -c "select pg_prewarm('heap')" >/dev/null
    HEAP_HASH=$(psql -X -At -d src -c "select count(*)||':'||sum(hashtext(t::text)::bigint) from heap t")
    HEAP_HALF=$(psql -X -At -d src -c "select pg_relation_size('heap') / current_setting('block_size')::int8 / 2")
  fi
  if ((NEED_WIDE)); then
    gen_table wide "$WIDE_ROWS"
    Q -d dst -c "DROP TABLE IF EXISTS wide" -c "$WIDE_DDL"
    # larger than shared_buffers together with items: read it once into the OS page cache
    Q -d src -c "select pg_prewarm('wide', 'read'), pg_prewarm(reltoastrelid::regclass, 'read') from pg_class where relname = 'wide'" >/dev/null
    WIDE_HASH=$(psql -X -At -d src -c "select count(*)||':'||sum(hashtext(t::text)::bigint) from wide t")
    WIDE_SIZE=$(psql -X -At -d src -c "select pg_size_pretty(pg_total_relation_size('wide'))||' ('||pg_total_relation_size('wide')||' B: heap '||pg_size_pretty(pg_relation_size('wide'))||', TOAST '||pg_size_pretty(pg_total_relation_size(reltoastrelid))||', pkey '||pg_size_pretty(pg_indexes_size('wide'))||')' from pg_class where relname='wide'")
    log "src.wide: $WIDE_ROWS rows, $WIDE_SIZE"
  fi
}

# reset the target as shared/bench/peers.sh does: TRUNCATE (recreate if a tool dropped the table
# or its PK) + CHECKPOINT; also drop Ferry's ledger schema
reset_target() { # TABLE
  local t=$1 ok
  ok=$(psql -X -At -d dst -c "select count(*) from pg_constraint where conrelid='public.$t'::regclass and contype='p'" 2>/dev/null || echo 0)
  if [[ $ok == 1 ]]; then Q -d dst -c "TRUNCATE $t"; else Q -d dst -c "DROP TABLE IF EXISTS $t" -c "$(ddl_of "$t")"; fi
  Q -d dst -c "DROP SCHEMA IF EXISTS ferry CASCADE" 2>/dev/null
  Q -d postgres -c "CHECKPOINT"
}

# ---------------------------------------------------------------- etcd (when the coordinator takes --etcd)
ETCD_PID=; ETCD_URL=; ETCD_DIR=
start_etcd() {
  ((ETCD_SUPPORTED)) || return 0
  want_any dist dist-replace wide-dist mem-dist mem-dist-wide keyless-dist || return 0
  local cp pp dir i
  cp=$(free_port); pp=$(free_port)
  while [[ $pp == "$cp" ]]; do pp=$(free_port); done
  dir=$(mktemp -d "$WORK/etcd.XXXXXX"); ETCD_DIR=$dir
  log "starting etcd on 127.0.0.1:$cp (data $dir)"
  /usr/bin/etcd --name bench --data-dir "$dir/data" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "bench=http://127.0.0.1:$pp" --log-level warn >"$OUT/logs/etcd.log" 2>&1 &
  ETCD_PID=$!
  ETCD_URL="http://127.0.0.1:$cp"
  for ((i = 0; i < 100; i++)); do
    curl -fsS "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    kill -0 "$ETCD_PID" 2>/dev/null || die "etcd exited, see $OUT/logs/etcd.log"
    sleep 0.1
  done
  die "etcd did not become healthy at $ETCD_URL/health"
}
stop_etcd() {
  [[ -n $ETCD_PID ]] && kill "$ETCD_PID" 2>/dev/null && wait "$ETCD_PID" 2>/dev/null || true
  [[ -n $ETCD_DIR ]] && rm -rf "$ETCD_DIR"
  ETCD_PID=; ETCD_DIR=
}
proc_cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- OTLP receiver (config local2-obs)
OTLP_PID=; OTLP_PORT=
start_otlp() {
  want local2-obs || return 0
  OTLP_PORT=$(free_port)
  "$VENV/bin/python" "$BENCH/otlp_sink.py" "$OTLP_PORT" "$OUT/otlp-spans.txt" >"$OUT/logs/otlp.log" 2>&1 &
  OTLP_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do port_in_use "$OTLP_PORT" && return 0; sleep 0.1; done
  die "the OTLP receiver did not listen on $OTLP_PORT, see $OUT/logs/otlp.log"
}
stop_otlp() { [[ -n $OTLP_PID ]] && kill "$OTLP_PID" 2>/dev/null && wait "$OTLP_PID" 2>/dev/null || true; OTLP_PID=; }

# ---------------------------------------------------------------- measurement
cpu_busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
# CPU ticks of our postgres tree: postmaster (self + reaped children) + live children
pg_ticks() {
  local pm; pm=$(head -1 "$PGDATA/postmaster.pid")
  { awk '{print $14+$15+$16+$17}' "/proc/$pm/stat"
    for c in $(pgrep -P "$pm"); do awk '{print $14+$15}' "/proc/$c/stat" 2>/dev/null || true; done
  } | awk '{s+=$1} END {print s}'
}
# backends may still be exiting after the tool returns: wait (max 10 s) until the postmaster has
# reaped every client backend, so their CPU is in its cutime/cstime
wait_backends_reaped() {
  local pm c busy i
  pm=$(head -1 "$PGDATA/postmaster.pid")
  for ((i = 0; i < 200; i++)); do
    busy=0
    for c in $(pgrep -P "$pm"); do
      if ! tr '\0' ' ' 2>/dev/null <"/proc/$c/cmdline" | grep -qE '^postgres: (checkpointer|background writer|walwriter|autovacuum|logical replication launcher)'; then busy=1; break; fi
    done
    ((busy)) || return 0
    sleep 0.05
  done
}
t_start() { B0=$(cpu_busy_jiffies); P0=$(pg_ticks); T0=$(date +%s.%N); }
t_end() { T1=$(date +%s.%N); B1=$(cpu_busy_jiffies); }
# /usr/bin/time -f '%e %U %S %M' output: last line (a "Command exited with non-zero status" line may precede)
time_cpu() { tail -1 "$1" 2>/dev/null | awk 'NF>=4 {printf "%.2f", $2+$3; ok=1} END {if (!ok) printf "0"}'; }
# seconds from the coordinator's "job submitted" to its "Parallel processing complete" log line
job_secs() { # LOGFILE
  local a b
  a=$(sed 's/\x1b\[[0-9;]*m//g' "$1" 2>/dev/null | grep -m1 'job submitted' | cut -d' ' -f1 || true)
  b=$(sed 's/\x1b\[[0-9;]*m//g' "$1" 2>/dev/null | grep -m1 'Parallel processing complete' | cut -d' ' -f1 || true)
  [[ -n $a && -n $b ]] || return 0
  a=$(date -d "$a" +%s.%N 2>/dev/null || true); b=$(date -d "$b" +%s.%N 2>/dev/null || true)
  [[ -n $a && -n $b ]] || return 0
  printf '%.3f' "$(echo "$b - $a" | bc -l)"
}
time_rss_mib() { tail -1 "$1" 2>/dev/null | awk 'NF>=4 {printf "%.1f", $4/1024; ok=1} END {if (!ok) printf "?"}'; }
TIMEF='%e %U %S %M'

# Each exec_* sets RC, TOOL_CPU and RSS ("name=MiB/CPUs;..." for Ferry processes) and calls
# t_start/t_end around the timed part.
exec_shell() { # LOGF CMD
  local lf=$1 cmd=$2
  echo "$cmd" >"$lf.cmd"
  t_start
  RC=0; /usr/bin/time -f "$TIMEF" -o "$lf.time" bash -o pipefail -c "$cmd" >"$lf" 2>&1 || RC=$?
  t_end
  TOOL_CPU=$(time_cpu "$lf.time"); RSS=
}

ferry_job_args() { # TABLE [CHUNK] [MODE]
  local a=(--query "SELECT * FROM public.$1" --table "public.$1")
  [[ -n ${2:-} ]] && a+=(--chunk-size "$2")
  [[ -n ${3:-} ]] && a+=(--mode "$3")
  printf '%s\n' "${a[@]}"
}

exec_local() { # LOGF TABLE WORKERS [CHUNK] [MODE]
  local lf=$1 t=$2 n=$3 chunk=${4:-} mode=${5:-} args
  mapfile -t args < <(ferry_job_args "$t" "$chunk" "$mode")
  args+=(${LOCAL_EXTRA:-})
  echo "$FERRY local --source $SRC_URL --target $DST_URL --workers $n ${args[*]@Q}" >"$lf.cmd"
  t_start
  RC=0; /usr/bin/time -f "$TIMEF" -o "$lf.time" "$FERRY" local --source "$SRC_URL" --target "$DST_URL" \
    --workers "$n" "${args[@]}" >"$lf" 2>&1 || RC=$?
  t_end
  TOOL_CPU=$(time_cpu "$lf.time")
  RSS="ferry-local=$(time_rss_mib "$lf.time")/$TOOL_CPU"
}

# ferry local with max_workers chunks always in flight (no adaptive concurrency)
exec_local_fixed() { local LOCAL_EXTRA=--fixed-workers; exec_local "$@"; }

# the same over TLS (verify-full) to source and target
exec_local_tls() { local SRC_URL=$TLS_SRC_URL DST_URL=$TLS_DST_URL; exec_local "$@"; }
exec_dist_tls() { local SRC_URL=$TLS_SRC_URL DST_URL=$TLS_DST_URL; exec_dist "$@"; }
# ferry local --workers N with /metrics on (scraped every second, as Prometheus would) and
# traces on (always_on sampler, exported to the local OTLP receiver)
exec_local_obs() { # LOGF TABLE WORKERS
  local lf=$1 t=$2 n=$3 args mp scraper
  mapfile -t args < <(ferry_job_args "$t")
  mp=$(free_port)
  echo "FERRY_METRICS_LISTEN=127.0.0.1:$mp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$OTLP_PORT OTEL_TRACES_SAMPLER=always_on $FERRY local --source $SRC_URL --target $DST_URL --workers $n ${args[*]@Q}   (GET /metrics every 1 s)" >"$lf.cmd"
  ( while sleep 1; do curl -fsS "http://127.0.0.1:$mp/metrics" >"$lf.metrics" 2>/dev/null || true; done ) &
  scraper=$!
  t_start
  RC=0; FERRY_METRICS_LISTEN=127.0.0.1:$mp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$OTLP_PORT OTEL_TRACES_SAMPLER=always_on \
    /usr/bin/time -f "$TIMEF" -o "$lf.time" "$FERRY" local --source "$SRC_URL" --target "$DST_URL" \
    --workers "$n" "${args[@]}" >"$lf" 2>&1 || RC=$?
  t_end
  kill "$scraper" 2>/dev/null; wait "$scraper" 2>/dev/null || true
  TOOL_CPU=$(time_cpu "$lf.time")
  RSS="ferry-local=$(time_rss_mib "$lf.time")/$TOOL_CPU"
}

# stop a process started as `/usr/bin/time ... ferry ...` (TIMEPID): SIGTERM to ferry, wait
stop_timed() {
  local tp=$1 fp i
  fp=$(pgrep -P "$tp" || true)
  [[ -n $fp ]] && kill -TERM "$fp" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do kill -0 "$tp" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$tp" 2>/dev/null; then
    log "  process $fp did not stop within 15 s of SIGTERM: SIGKILL"
    [[ -n $fp ]] && kill -KILL "$fp" 2>/dev/null || true
  fi
  wait "$tp" 2>/dev/null || true
}

exec_dist() { # LOGF TABLE [CHUNK] [MODE]
  local lf=$1 t=$2 chunk=${3:-} mode=${4:-} args cport curl_ i w e0 e1
  mapfile -t args < <(ferry_job_args "$t" "$chunk" "$mode")
  cport=$(free_port); curl_="http://127.0.0.1:$cport"
  local eargs=()
  ((ETCD_SUPPORTED)) && [[ -n $ETCD_URL ]] && eargs=(--etcd "$ETCD_URL" --etcd-prefix "/ferry-bench/$(basename "$lf" .log)")
  export FERRY_CONN_SRC=$SRC_URL FERRY_CONN_DST=$DST_URL
  {
    echo "FERRY_CONN_SRC=$SRC_URL FERRY_CONN_DST=$DST_URL $FERRY coordinator --listen 127.0.0.1:$cport ${eargs[*]}"
    echo "FERRY_CONN_SRC=$SRC_URL FERRY_CONN_DST=$DST_URL $FERRY worker --coordinator $curl_ --concurrency $DIST_CONCURRENCY   (x$DIST_WORKERS)"
    echo "$FERRY submit --coordinator $curl_ --source src --target dst ${args[*]@Q} --max-workers $((DIST_WORKERS * DIST_CONCURRENCY)) --watch"
  } >"$lf.cmd"
  /usr/bin/time -f "$TIMEF" -o "$lf.coord.time" "$FERRY" coordinator --listen "127.0.0.1:$cport" "${eargs[@]}" >"$lf.coord.log" 2>&1 &
  local ctp=$! wtp=()
  RC=0
  for ((i = 0; i < 300; i++)); do
    "$FERRY" jobs --coordinator "$curl_" >/dev/null 2>&1 && break
    kill -0 "$ctp" 2>/dev/null || break
    sleep 0.1
  done
  if ! "$FERRY" jobs --coordinator "$curl_" >"$lf.jobs" 2>&1; then
    echo "coordinator not ready after 30 s: $(tail -3 "$lf.jobs")" >"$lf"; RC=97
  fi
  for ((w = 1; w <= DIST_WORKERS; w++)); do
    HOSTNAME=bench-w$w /usr/bin/time -f "$TIMEF" -o "$lf.w$w.time" "$FERRY" worker --coordinator "$curl_" \
      --concurrency "$DIST_CONCURRENCY" >"$lf.w$w.log" 2>&1 &
    wtp+=($!)
  done
  sleep 1 # let the workers connect before the clock starts
  [[ -n $ETCD_PID ]] && e0=$(proc_cpu_ticks "$ETCD_PID")
  t_start
  if ((RC == 0)); then
    /usr/bin/time -f "$TIMEF" -o "$lf.submit.time" "$FERRY" submit --coordinator "$curl_" --source src --target dst \
      "${args[@]}" --max-workers $((DIST_WORKERS * DIST_CONCURRENCY)) --watch >"$lf" 2>&1 || RC=$?
  fi
  t_end
  [[ -n $ETCD_PID ]] && e1=$(proc_cpu_ticks "$ETCD_PID")
  for tp in "${wtp[@]}"; do stop_timed "$tp"; done
  stop_timed "$ctp"
  local c s
  c=$(time_cpu "$lf.coord.time"); s=$(time_cpu "$lf.submit.time")
  RSS="coord=$(time_rss_mib "$lf.coord.time")/$c"
  TOOL_CPU=$(echo "$c + $s" | bc -l)
  for ((w = 1; w <= DIST_WORKERS; w++)); do
    c=$(time_cpu "$lf.w$w.time")
    RSS+=";w$w=$(time_rss_mib "$lf.w$w.time")/$c"
    TOOL_CPU=$(echo "$TOOL_CPU + $c" | bc -l)
  done
  RSS+=";submit=$(time_rss_mib "$lf.submit.time")/$s"
  if [[ -n $ETCD_PID ]]; then
    c=$(echo "scale=2; ($e1 - $e0) / $HZ" | bc -l)
    RSS+=";etcd=-/$c"
    TOOL_CPU=$(echo "$TOOL_CPU + $c" | bc -l)
  fi
  TOOL_CPU=$(printf '%.2f' "$TOOL_CPU")
  # a worker or coordinator that died during the run is a failure even if submit said SUCCEEDED
  for f in "$lf.coord.time" "$lf.w"*.time; do
    grep -q 'Command terminated by signal 9' "$f" 2>/dev/null && { RC=98; echo "killed: $f" >>"$lf"; }
  done
  return 0
}

# ---------------------------------------------------------------- configs
# cfg NAME TABLE GROUP "LABEL" EXEC...   (EXEC = exec_* function and its args after LOGF)
C_NAME=(); C_TABLE=(); C_GROUP=(); C_LABEL=(); C_EXEC=()
cfg() {
  want "$1" || return 0
  C_NAME+=("$1"); C_TABLE+=("$2"); C_GROUP+=("$3"); C_LABEL+=("$4"); shift 4
  C_EXEC+=("$(printf '%q ' "$@")")
}
pipe_cmd() { # FROM [TABLE]
  echo "psql -X -q -d src -c \"COPY (SELECT * FROM $1) TO STDOUT (FORMAT binary)\" | psql -X -q -v ON_ERROR_STOP=1 -d dst -c \"COPY ${2:-$1} FROM STDIN (FORMAT binary)\""
}
define_configs() {
  local dist_label="Ferry distributed: coordinator + $DIST_WORKERS worker processes x concurrency $DIST_CONCURRENCY"
  ((ETCD_SUPPORTED)) && dist_label+=", etcd store" || dist_label+=", in-memory store (no --etcd)"
  local W=$WORK/pgcopydb-work F=$OUT/pgcopydb-filters.ini
  printf '[include-only-table]\npublic.items\n' >"$F"
  local S="SLING_DISABLE_TELEMETRY=true SLING_HOME_DIR=$WORK/slinghome SRC_PG='postgresql://postgres@127.0.0.1:$PORT/src?sslmode=disable' DST_PG='postgresql://postgres@127.0.0.1:$PORT/dst?sslmode=disable'"

  cfg pipe items narrow "psql COPY binary pipe, 1 stream" exec_shell "$(pipe_cmd items)"
  cfg pipe-nopk items narrow "the pipe with the PK dropped before and added after (timed)" exec_shell \
    "psql -X -q -v ON_ERROR_STOP=1 -d dst -c 'ALTER TABLE items DROP CONSTRAINT items_pkey' && $(pipe_cmd items) && psql -X -q -v ON_ERROR_STOP=1 -d dst -c 'ALTER TABLE items ADD PRIMARY KEY (id)'"
  cfg local1 items narrow "ferry local --workers 1" exec_local items 1
  cfg local2 items narrow "ferry local --workers 2" exec_local items 2
  cfg local4 items narrow "ferry local --workers 4" exec_local items 4
  cfg dist items narrow "$dist_label" exec_dist items
  cfg local2-replace items narrow "ferry local --workers 2 --mode replace (load w/o indexes, build PK, swap)" exec_local items 2 "" replace
  cfg dist-replace items narrow "$dist_label, --mode replace" exec_dist items "" replace
  cfg pgcopydb items narrow "pgcopydb copy table-data --table-jobs 2" exec_shell \
    "rm -rf $W; pgcopydb copy table-data --source $SRC_URL --target $DST_URL --dir $W --filters $F --table-jobs 2"
  cfg pgcopydb-clone items narrow "pgcopydb clone --table-jobs 2 --index-jobs 2 (table w/o PK, COPY, then PK)" exec_shell \
    "rm -rf $W; pgcopydb clone --source $SRC_URL --target $DST_URL --dir $W --filters $F --drop-if-exists --no-owner --no-acl --skip-extensions --table-jobs 2 --index-jobs 2"
  cfg sling items narrow "sling 1.4.11 -m truncate, SLING_DIRECT_INSERT=true" exec_shell \
    "$S SLING_DIRECT_INSERT=true $SLING_BIN run --src-conn SRC_PG --src-stream public.items --tgt-conn DST_PG --tgt-object public.items -m truncate"

  # keyless: ctid block ranges (Ferry) against two psql pipes over ctid halves, and `items` with its key
  local lo="ctid < '(${HEAP_HALF:-0},0)'" hi="ctid >= '(${HEAP_HALF:-0},0)'"
  cfg keyless-local2 heap keyless "ferry local --workers 2 on the keyless table (ctid block ranges)" exec_local heap 2
  cfg keyless-dist heap keyless "$dist_label, keyless table (ctid block ranges)" exec_dist heap
  cfg keyless-pipe2 heap keyless "two concurrent psql COPY binary pipes over ctid halves" exec_shell \
    "$(pipe_cmd "heap WHERE $lo" heap) & p=\$!; $(pipe_cmd "heap WHERE $hi" heap) && wait \$p"

  cfg tls-local2 items narrow "ferry local --workers 2, PostgreSQL over TLS (verify-full, source and target)" exec_local_tls items 2
  cfg tls-dist items narrow "$dist_label, PostgreSQL over TLS (verify-full, source and target)" exec_dist_tls items

  cfg wide-pipe wide wide "psql COPY binary pipe, 1 stream" exec_shell "$(pipe_cmd wide)"
  cfg wide-local2 wide wide "ferry local --workers 2" exec_local wide 2
  cfg wide-dist wide wide "$dist_label" exec_dist wide
  cfg wide-local2-replace wide wide "ferry local --workers 2 --mode replace" exec_local wide 2 "" replace

  cfg mem-local items mem "ferry local --workers 2 --chunk-size $MEM_CHUNK" exec_local items 2 "$MEM_CHUNK"
  cfg mem-dist items mem "Ferry distributed --chunk-size $MEM_CHUNK ($DIST_WORKERS workers x $DIST_CONCURRENCY)" exec_dist items "$MEM_CHUNK"
  cfg mem-local-wide wide mem "ferry local --workers 2 --chunk-size $MEM_CHUNK" exec_local wide 2 "$MEM_CHUNK"
  cfg mem-dist-wide wide mem "Ferry distributed --chunk-size $MEM_CHUNK ($DIST_WORKERS workers x $DIST_CONCURRENCY)" exec_dist wide "$MEM_CHUNK"

  local n
  for n in 1 2 4 8; do
    cfg "fixed$n" items concur "ferry local --workers $n --fixed-workers --chunk-size $CONCUR_CHUNK" exec_local_fixed items "$n" "$CONCUR_CHUNK"
  done
  cfg adaptive8 items concur "ferry local --workers 8 --chunk-size $CONCUR_CHUNK (adaptive below 8)" exec_local items 8 "$CONCUR_CHUNK"

  cfg local2-obs items obs "ferry local --workers 2, metrics (scraped every 1 s) and traces (always_on, local OTLP receiver) on" exec_local_obs items 2

  : >"$CONFIGS_TSV"
  local i rows
  for i in "${!C_NAME[@]}"; do
    [[ ${C_TABLE[i]} == items || ${C_TABLE[i]} == heap ]] && rows=$ROWS || rows=$WIDE_ROWS
    printf '%s\t%s\t%s\t%s\t%s\n' "${C_NAME[i]}" "${C_TABLE[i]}" "${C_GROUP[i]}" "$rows" "${C_LABEL[i]}" >>"$CONFIGS_TSV"
  done
}

# ---------------------------------------------------------------- one run
run_one() { # INDEX ROUND
  local i=$1 r=$2 name=${C_NAME[$1]} t=${C_TABLE[$1]} lf
  lf="$OUT/logs/$name-r$r.log"
  rm -f "$lf" "$lf".*
  reset_target "$t"
  local l0; l0=$(stat -c %s "$PGLOG")
  RC=0; TOOL_CPU=0; RSS=
  eval "${C_EXEC[i]%% *} \"\$lf\" ${C_EXEC[i]#* }"
  wait_backends_reaped
  local p1 wall busy pgc other js=
  if [[ -n $RSS ]]; then [[ -f $lf.coord.log ]] && js=$(job_secs "$lf.coord.log") || js=$(job_secs "$lf"); fi
  p1=$(pg_ticks)
  wall=$(echo "$T1 - $T0" | bc -l)
  busy=$(echo "($B1 - $B0) / $HZ" | bc -l)
  pgc=$(echo "($p1 - $P0) / $HZ" | bc -l)
  local av; av=$(tail -c +$((l0 + 1)) "$PGLOG" | grep -cE 'automatic (vacuum|analyze) of table "(src|dst)\.' || true)
  local status=ok check=""
  if ((RC != 0)); then
    status=FAIL; check="exit $RC"
    log "FAILED: $name round $r (exit $RC), see $lf"; tail -5 "$lf" | sed 's/^/    /' >&2
  else
    local want_v got
    case $t in items) want_v=$ITEMS_HASH ;; heap) want_v=$HEAP_HASH ;; items_*) want_v=${TABLE_HASH[$t]} ;; *) want_v=$WIDE_HASH ;; esac
    if [[ $r == 1 ]]; then
      got=$(psql -X -At -d dst -c "select count(*)||':'||coalesce(sum(hashtext(t::text)::bigint), 0) from $t t")
      [[ $got == "$want_v" ]] && check=hash-ok || { check="HASH-MISMATCH($got vs $want_v)"; status=FAIL; }
    else
      got=$(psql -X -At -d dst -c "select count(*) from $t")
      [[ $got == "${want_v%%:*}" ]] && check=count-ok || { check="COUNT-MISMATCH($got vs ${want_v%%:*})"; status=FAIL; }
    fi
    local pk; pk=$(psql -X -At -d dst -c "select count(*) from pg_constraint where conrelid='public.$t'::regclass and contype='p'")
    [[ $pk == 1 || $t == heap ]] || { check="$check,NO-PK"; status=FAIL; }
    [[ $status == ok ]] || log "CHECK FAILED: $name round $r: $check"
  fi
  [[ $status == ok ]] || record_failure "$name" "$r" "$check" "$lf"
  other=$(echo "o = $busy - $TOOL_CPU - $pgc; if (o < 0) o = 0; o" | bc -l)
  printf '%s\t%s\t%s\t%.3f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\n' "$name" "$r" "$status" "$wall" "$TOOL_CPU" "$pgc" "$busy" "$other" "$check" "$RSS" "$av" "$js" >>"$RUNS_TSV"
  log "$(printf '%-15s r%s %-4s %7.2fs job=%ss tool_cpu=%5.2fs pg_cpu=%5.2fs other_cpu=%5.2fs autovac=%s %s %s' "$name" "$r" "$status" "$wall" "${js:--}" "$TOOL_CPU" "$pgc" "$other" "$av" "$check" "$RSS")"
}

record_failure() { # NAME ROUND CHECK LOGF
  local f
  {
    echo "### $1, round $2: $3"
    echo
    echo '```'
    echo "# command"
    cat "$4.cmd" 2>/dev/null || true
    for f in "$4" "$4".*.log; do
      [[ -s $f ]] || continue
      echo "# last lines of $(basename "$f")"
      sed 's/\x1b\[[0-9;]*m//g' "$f" | tail -n 8 | cut -c1-400
    done
    echo '```'
    echo
  } >>"$OUT/failures.md"
}

versions() {
  echo "- Machine: $NCPU vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r); PostgreSQL and every tool share these cores (other processes on the machine are not stopped: see the \"other CPU\" column)"
  echo "- PostgreSQL: $(psql -X -At -d postgres -c 'select version()' | cut -d, -f1) (cluster $PGDATA, 127.0.0.1:$PORT; shared_buffers=1GB, max_wal_size=4GB, checkpoint_timeout=15min, the rest default incl. fsync/synchronous_commit on); psql $(psql --version | awk '{print $3}')"
  echo "- Ferry: \`ferry --version\` = $("$FERRY" --version), built $FERRY_MTIME from $FERRY_SRC at commit $FERRY_REV$( ((FERRY_DIRTY)) && echo " with $FERRY_DIRTY uncommitted tracked change(s) in the tree" ), sha256 $FERRY_SHA; $( ((ETCD_SUPPORTED)) && echo "coordinator run with --etcd ($(/usr/bin/etcd --version | head -1))" || echo "coordinator without --etcd ($( [[ ${ETCD:-auto} == 0 ]] && echo "ETCD=0" || echo "not supported by this binary"), in-memory store)")"
  want_any pgcopydb pgcopydb-clone && echo "- pgcopydb: $(pgcopydb --version 2>&1 | grep -m1 -o 'pgcopydb version [^ ]*' || echo unknown) (Debian package $(dpkg-query -W -f '${Version}' pgcopydb))"
  want sling && echo "- sling: $($SLING_BIN --version 2>&1 | grep -m1 -i version || echo unknown) (binary from PyPI sling-linux-amd64 $("$VENV/bin/pip" show sling-linux-amd64 2>/dev/null | awk '/^Version/{print $2}'))"
  echo "- rustc: $(rustc --version 2>/dev/null || echo n/a)"
  return 0
}

cleanup() {
  stop_otlp
  stop_etcd
  if [[ -z ${KEEP:-} && -n ${PORT:-} ]]; then log "stopping cluster"; stop_cluster; fi
}

main() {
  log "ferry bench: ROWS=$ROWS WIDE_ROWS=$WIDE_ROWS ROUNDS=$ROUNDS ONLY=\"$ONLY\""
  install_deps
  ferry_binary
  trap cleanup EXIT
  start_cluster
  gen_data
  start_etcd
  start_otlp
  define_configs
  : >"$RUNS_TSV"; rm -f "$OUT/failures.md"
  local r i
  for ((r = 1; r <= ROUNDS; r++)); do
    log "---- round $r/$ROUNDS"
    for i in "${!C_NAME[@]}"; do run_one "$i" "$r"; done
  done
  local full=0
  [[ $ROWS == 5000000 && $WIDE_ROWS == 500000 && $ROUNDS -ge 3 && ${#C_NAME[@]} -eq $(wc -w <<<"$ALL_CONFIGS") ]] && full=1
  local results=${RESULTS:-}
  [[ -n $results ]] || { ((full)) && results=$BENCH/RESULTS.md || results=$OUT/RESULTS.md; }
  {
    echo "- Date: $STARTED to $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- Command: \`$( [[ $ROWS != 5000000 ]] && printf 'ROWS=%s ' "$ROWS"; [[ $WIDE_ROWS != 500000 ]] && printf 'WIDE_ROWS=%s ' "$WIDE_ROWS"; [[ $ROUNDS != 3 ]] && printf 'ROUNDS=%s ' "$ROUNDS"; [[ $ONLY != "$ALL_CONFIGS" ]] && printf 'ONLY="%s" ' "$ONLY"; [[ $DIST_CONCURRENCY != 1 ]] && printf 'DIST_CONCURRENCY=%s ' "$DIST_CONCURRENCY")bash bench/run.sh\`"
    versions
    ((NEED_ITEMS)) && echo "- Narrow table \`items\` (generator of shared/bench/peers.sh): $ROWS rows, $ITEMS_SIZE"
    ((NEED_WIDE)) && echo "- Wide table \`wide(id bigint primary key, payload text)\`, 2,048-char md5-hex payload (stored in TOAST): $WIDE_ROWS rows, $WIDE_SIZE"
  } >"$OUT/header.md"
  printf 'REPORT_ROUNDS=%q\nREPORT_DIST_CONCURRENCY=%q\nREPORT_RESULTS=%q\n' "$ROUNDS" "$DIST_CONCURRENCY" "$results" >"$OUT/meta.env"
  if want local2 && want local2-obs; then obs_summary; fi
  if want adaptive8; then concur_summary; fi
  report || log "summarize.py could not build the full report from this subset of configs (see the tables above)"
}

# telemetry cost: medians of local2 (off) and local2-obs (metrics + tracing on) over the rounds
obs_summary() {
  python3 - "$RUNS_TSV" "$ROWS" <<'PY' | tee "$OUT/observability.md"
import csv, statistics, sys
runs, rows = sys.argv[1], int(sys.argv[2])
by = {}
for r in csv.reader(open(runs), delimiter="\t"):
    if r[2] == "ok":
        by.setdefault(r[0], []).append((float(r[3]), float(r[4])))
off, on = by.get("local2", []), by.get("local2-obs", [])
if not off or not on:
    sys.exit("no successful runs of both local2 and local2-obs")
med = lambda xs: statistics.median(xs)
w0, w1 = med([w for w, _ in off]), med([w for w, _ in on])
c0, c1 = med([c for _, c in off]), med([c for _, c in on])
per = lambda c: c / rows * 1e6
print(f"| ferry local --workers 2, {rows:,} rows | rounds | wall s (median) | ferry CPU-s per million rows (median) |")
print("|---|---|---|---|")
print(f"| telemetry off | {len(off)} | {w0:.2f} | {per(c0):.3f} |")
print(f"| metrics + tracing on (always_on) | {len(on)} | {w1:.2f} | {per(c1):.3f} |")
print(f"| ratio on/off | | {w1 / w0:.3f}x | {c1 / c0:.3f}x (goal <= 1.05x) |")
PY
}

# adaptive concurrency: medians of fixed 1/2/4/8 and adaptive 8, the ratio to the best fixed count,
# and the levels the adaptive runs went through (their "concurrency <target>: A → B" lines)
concur_summary() {
  python3 - "$RUNS_TSV" "$ROWS" "$OUT/logs" <<'PY' | tee "$OUT/concurrency.md"
import csv, glob, re, statistics, sys
runs, rows, logs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
by = {}
for r in csv.reader(open(runs), delimiter="\t"):
    if r[2] == "ok" and r[0] in ("fixed1", "fixed2", "fixed4", "fixed8", "adaptive8"):
        by.setdefault(r[0], []).append((float(r[3]), float(r[4]), float(r[5])))
med = statistics.median
print(f"| ferry local, {rows:,} rows | rounds | wall s (median) | rows/s (median) | ferry CPU-s | postgres CPU-s | vs best fixed |")
print("|---|---|---|---|---|---|---|")
rate = {n: rows / med([w for w, _, _ in v]) for n, v in by.items()}
fixed = {n: rate[n] for n in rate if n.startswith("fixed")}
best = max(fixed, key=fixed.get) if fixed else None
for n in ("fixed1", "fixed2", "fixed4", "fixed8", "adaptive8"):
    if n not in by:
        continue
    v = by[n]
    ratio = f"{rate[n] / fixed[best]:.3f}x" if best else ""
    print(f"| {n} | {len(v)} | {med([w for w, _, _ in v]):.2f} | {rate[n]:,.0f} | {med([c for _, c, _ in v]):.2f} | {med([p for _, _, p in v]):.2f} | {ratio} |")
if best and "adaptive8" in rate:
    r = rate["adaptive8"] / fixed[best]
    print(f"\nBest fixed count: {best}. adaptive8 reaches {r:.3f}x its rows/s: goal 0.97x {'met' if r >= 0.97 else 'missed'}.")
for f in sorted(glob.glob(f"{logs}/adaptive8*")):
    if f.endswith((".cmd", ".time")):
        continue
    steps = re.findall(r"concurrency \S+: (\d+) → (\d+)", open(f, errors="replace").read())
    if steps:
        print(f"- {f.split('/')[-1]}: 2" + "".join(f" → {b}" for _, b in steps))
PY
}

# (re)write the report from $OUT (runs.tsv, configs.tsv, header.md, logs/); REPORT_ONLY=1 runs just this
report() {
  # shellcheck disable=SC1091
  source "$OUT/meta.env"
  local results=${RESULTS:-$REPORT_RESULTS}
  python3 "$BENCH/summarize.py" --runs "$RUNS_TSV" --configs "$CONFIGS_TSV" --header "$OUT/header.md" \
    --failures "$OUT/failures.md" --logs "$OUT/logs" --rounds "$REPORT_ROUNDS" --dist-concurrency "$REPORT_DIST_CONCURRENCY" \
    --dist-workers "$DIST_WORKERS" >"$OUT/table.md"
  # the section bench/growth.sh writes stays (it is not this run's)
  local kept=; [[ -f $results ]] && kept=$(sed -n '/^<!-- growth:begin/,/^<!-- growth:end -->/p' "$results")
  cp "$OUT/table.md" "$results"
  [[ -z $kept ]] || printf '\n%s\n' "$kept" >>"$results"
  cat "$OUT/table.md"
  log "wrote $results (runs: $RUNS_TSV, logs: $OUT/logs/)"
}
# sourced (bench/growth.sh): the functions above, nothing run
if [[ ${BASH_SOURCE[0]} != "$0" ]]; then return 0; fi
if [[ -n ${REPORT_ONLY:-} ]]; then report; exit 0; fi
main "$@"
