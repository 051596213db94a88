#!/usr/bin/env bash
# Issue 13's measurement: sqlx multi-row INSERT against mysql_async LOAD DATA LOCAL INFILE (and
# mysql_async INSERT, and the mariadb CLI's LOAD DATA LOCAL INFILE from files) into MariaDB, in
# chunks of one transaction each, interleaved rounds. Self-contained: installs MariaDB if missing
# (the system service is never started), starts a throwaway mariadbd on a free 127.0.0.1 port in
# $WORK, builds the bench in release mode if needed, runs it, stops the server.
#
#   bash bench/mysql-load/run.sh                       # 1,000,000 rows, 3 rounds (~15 min on 2 cores)
#   ROWS=100000 ROUNDS=1 bash bench/mysql-load/run.sh  # smoke run
#
# Knobs: ROWS (1000000), CHUNK (50000), ROUNDS (3), METHODS (comma list, see src/main.rs),
# PIECE (bytes per LOAD DATA stream piece, 262144), PROBES (1: run the correctness probes),
# WORK (/tmp/ferry-loadbench), OUT (bench/mysql-load/out), PORT (55436 or a free port), KEEP=1
# (leave the server running).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/tmp/ferry-loadbench}
OUT=${OUT:-$HERE/out}
export ROWS=${ROWS:-1000000} CHUNK=${CHUNK:-50000} ROUNDS=${ROUNDS:-3} PIECE=${PIECE:-262144}
export PROBES=${PROBES:-1}
BIN=$HERE/target/release/ferry-mysql-load-bench

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

if ! command -v mariadbd >/dev/null || ! command -v mariadb >/dev/null; then
  log "installing mariadb-server and mariadb-client (the service is not started)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server mariadb-client >/dev/null
fi
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [[ -z ${PORT:-} ]]; then
  PORT=55436
  while ! port_free "$PORT"; do PORT=$((PORT + 1)); done
fi
export PORT

rm -rf "$WORK/data"
mkdir -p "$WORK" "$OUT"
SOCK=$WORK/mysqld.sock
log "initialising a datadir in $WORK/data"
mariadb-install-db --no-defaults --user=root --datadir="$WORK/data" --skip-test-db \
  >"$WORK/install-db.log" 2>&1
log "starting mariadbd on 127.0.0.1:$PORT"
"$MARIADBD" --no-defaults --user=root --datadir="$WORK/data" --port="$PORT" --socket="$SOCK" \
  --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$WORK/mysqld.pid" \
  --log-error="$WORK/mysqld.err" --tmpdir="$WORK" \
  --local-infile=1 --skip-log-bin \
  --innodb-buffer-pool-size=1G \
  --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci &
SERVER_PID=$!
export SERVER_PID
stop() {
  if [[ -z ${KEEP:-} ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    log "stopping mariadbd ($SERVER_PID)"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap stop EXIT
for _ in $(seq 1 120); do
  [[ -S $SOCK ]] && mariadb --no-defaults --socket="$SOCK" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/mysqld.err" >&2; exit 1; }
  sleep 0.5
done
mariadb --no-defaults --socket="$SOCK" -uroot -e "
  CREATE USER IF NOT EXISTS bench@'127.0.0.1' IDENTIFIED BY 'bench';
  GRANT ALL PRIVILEGES ON *.* TO bench@'127.0.0.1';
  CREATE DATABASE IF NOT EXISTS bench CHARACTER SET utf8mb4;"

if [[ ! -x $BIN || -n ${BUILD:-} ]]; then
  log "building the bench (release)"
  (cd "$HERE" && nice -n 10 cargo build --release --locked -j 2)
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "server: $("$MARIADBD" --version)"
  echo "client: $(mariadb --version)"
  echo "crates: $(cd "$HERE" && grep -A1 -E '^name = "(sqlx|sqlx-mysql|mysql_async|mysql_common)"$' Cargo.lock | grep -v -- -- | paste - - | sed 's/name = //; s/version = //; s/"//g' | tr '\n' ';')"
  echo "rustc: $(rustc --version)"
  mariadb --no-defaults --socket="$SOCK" -uroot -N -e "SELECT CONCAT('settings: innodb_buffer_pool_size=', @@innodb_buffer_pool_size, ' innodb_flush_log_at_trx_commit=', @@innodb_flush_log_at_trx_commit, ' innodb_log_file_size=', @@innodb_log_file_size, ' innodb_doublewrite=', @@innodb_doublewrite, ' log_bin=', @@log_bin, ' max_allowed_packet=', @@max_allowed_packet, ' local_infile=', @@local_infile, ' sql_mode=', @@sql_mode)"
  echo "rows=$ROWS chunk=$CHUNK rounds=$ROUNDS piece=$PIECE"
} | tee "$OUT/env.txt" >&2

log "running (load average $(cut -d' ' -f1 /proc/loadavg))"
WORK=$WORK OUT=$OUT "$BIN"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/env.txt" >&2
log "done: $OUT/table.md, $OUT/runs.tsv, $OUT/probes.md, $OUT/env.txt"
