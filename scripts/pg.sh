#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for the quick start and for manual testing.
#
#   scripts/pg.sh start DIR PORT   initdb into DIR/data (if needed) and start on 127.0.0.1:PORT
#   scripts/pg.sh stop DIR         stop the cluster in DIR (fast shutdown)
#   scripts/pg.sh url DIR PORT DB  print postgres://postgres@127.0.0.1:PORT/DB
#
# Can also be sourced for the pg_start/pg_stop/pg_url functions.
# initdb and pg_ctl refuse to run as root, so as root they run as user postgres.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# Runs a command as the postgres user when we are root, else as ourselves.
pg_as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_require() {
    if [[ ! -x "$PG_BIN/initdb" || ! -x "$PG_BIN/pg_ctl" ]]; then
        echo "pg.sh: PostgreSQL 15 not found in $PG_BIN; run scripts/setup.sh first" >&2
        return 1
    fi
}

# pg_start DIR PORT: creates (once) and starts a cluster with its socket in DIR.
pg_start() {
    local dir=${1:?usage: pg_start DIR PORT} port=${2:?usage: pg_start DIR PORT}
    pg_require
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir"
        if ! runuser -u postgres -- test -w "$dir"; then
            echo "pg.sh: user postgres cannot reach $dir; every parent directory must be searchable (chmod o+x)" >&2
            return 1
        fi
    fi
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        pg_as_owner "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 \
            --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            return 1
        }
        pg_as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF

# set by scripts/pg.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_buffers = 256MB
max_wal_size = 4GB
max_connections = 200
CONF
    else
        # Keep the requested port if the cluster is restarted on another one.
        pg_as_owner sed -i "s/^port = .*/port = $port/" "$dir/data/postgresql.conf"
    fi
    pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null || {
        tail -n 30 "$dir/postgres.log" >&2 || true
        return 1
    }
    echo "pg.sh: PostgreSQL running on 127.0.0.1:$port (data in $dir/data, log $dir/postgres.log)" >&2
}

# pg_stop DIR: fast shutdown; a cluster that is not running is not an error.
pg_stop() {
    local dir=${1:?usage: pg_stop DIR}
    pg_require
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    fi
}

# pg_url PORT DB: the connection URL for DB on PORT.
pg_url() {
    echo "postgres://postgres@127.0.0.1:${1:?port}/${2:?db}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    cmd=${1:-}
    shift || true
    case "$cmd" in
    start) pg_start "$@" ;;
    stop) pg_stop "$@" ;;
    url) pg_url "${2:?usage: pg.sh url DIR PORT DB}" "${3:?usage: pg.sh url DIR PORT DB}" ;;
    *)
        echo "usage: $0 start DIR PORT | stop DIR | url DIR PORT DB" >&2
        exit 2
        ;;
    esac
fi
