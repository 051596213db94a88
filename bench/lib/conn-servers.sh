# Throwaway servers for bench/connectors.sh: PostgreSQL 15 and MariaDB on free 127.0.0.1 ports in
# $WORK, and the CPU counters of both. Recipes from /work/shared/acceptance/lib/common.sh.
# Sourced; expects WORK and log(). Everything started here is stopped by stop_servers.

PGBIN=/usr/lib/postgresql/15/bin
SERVER_PIDS=()

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

# start_pg: cluster in $WORK/pg with databases src and dst; sets PG_PORT, PGDATA_B, exports PG*.
start_pg() {
  PG_PORT=$(free_port)
  PGDATA_B=$WORK/pg
  mkdir -p "$PGDATA_B" "$WORK/pgrun"
  chown postgres:postgres "$PGDATA_B" "$WORK/pgrun"
  chmod 700 "$PGDATA_B"
  as_postgres "$PGBIN/initdb" -D "$PGDATA_B" -U postgres --auth=trust --no-sync -E UTF8 \
    --locale=C.UTF-8 >/dev/null
  cat >>"$PGDATA_B/postgresql.conf" <<CONF
port = $PG_PORT
unix_socket_directories = '$WORK/pgrun'
listen_addresses = '127.0.0.1'
fsync = off
shared_buffers = 512MB
max_wal_size = 1GB
timezone = 'UTC'
CONF
  as_postgres "$PGBIN/pg_ctl" -D "$PGDATA_B" -l "$WORK/pgrun/pg.log" -w -t 60 start >/dev/null
  export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGTZ=UTC
  psql -XqAt -d postgres -c "create database src" -c "create database dst" >/dev/null
}

# start_mariadb: mariadbd in $WORK/maria, databases src and dst; sets MY_PORT, MY_PID.
start_mariadb() {
  command -v mariadbd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y \
    --no-install-recommends mariadb-server mariadb-client >/dev/null
  MY_PORT=$(free_port)
  local d=$WORK/maria
  mkdir -p "$d/data" "$d/files"
  chown -R mysql:mysql "$d"
  mariadb-install-db --no-defaults --user=mysql --datadir="$d/data" --skip-test-db \
    --auth-root-authentication-method=normal >"$d/install.log" 2>&1
  mariadbd --no-defaults --user=mysql --datadir="$d/data" --port="$MY_PORT" \
    --bind-address=127.0.0.1 --socket="$d/sock" --pid-file="$d/pid" --skip-name-resolve \
    --log-error="$d/err.log" --local-infile=1 --max-allowed-packet=64M --skip-log-bin \
    --innodb-buffer-pool-size=1G --secure-file-priv="$d/files" \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci &
  MY_PID=$!
  SERVER_PIDS+=("$MY_PID")
  local _
  for _ in $(seq 150); do my -e 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
  my -e 'create database src; create database dst'
  MY_FILES=$d/files
}
my() { mariadb --no-defaults -h127.0.0.1 -P"$MY_PORT" -uroot -N -B "$@"; }

stop_servers() {
  local p
  for p in "${SERVER_PIDS[@]:-}"; do
    [[ -n $p ]] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  if [[ -n ${PGDATA_B:-} && -f $PGDATA_B/postmaster.pid ]]; then
    as_postgres "$PGBIN/pg_ctl" -D "$PGDATA_B" -m immediate -w stop >/dev/null 2>&1 || true
  fi
}

# CPU seconds (user+system) of both servers so far: PostgreSQL's postmaster with its reaped
# children plus live children, and mariadbd (all threads).
HZ=$(getconf CLK_TCK)
db_cpu() {
  local pm
  pm=$(head -1 "$PGDATA_B/postmaster.pid")
  {
    awk '{print $14+$15+$16+$17}' "/proc/$pm/stat"
    for c in $(pgrep -P "$pm"); do awk '{print $14+$15}' "/proc/$c/stat" 2>/dev/null || true; done
    awk '{print $14+$15}' "/proc/$MY_PID/stat"
  } | awk -v hz="$HZ" '{s+=$1} END {printf "%.2f", s/hz}'
}

# wait until PostgreSQL has no client backend left (their CPU is then in the postmaster's).
pg_quiet() {
  local i n
  for ((i = 0; i < 100; i++)); do
    n=$(psql -XqAt -d postgres -c "select count(*) from pg_stat_activity
      where backend_type = 'client backend' and pid <> pg_backend_pid()")
    [[ $n == 0 ]] && return 0
    sleep 0.1
  done
}
