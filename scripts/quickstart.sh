#!/usr/bin/env bash
# Quick start: builds ferry, starts a throwaway PostgreSQL cluster, copies a
# 1,000,000-row table from database src to database dst with `ferry local`,
# and checks that both sides have the same row count and checksum.
# Exits non-zero when they differ. The cluster is removed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
ROWS=${ROWS:-1000000}     # rows generated in the source
WORKERS=${WORKERS:-4}     # ferry local --workers

bash scripts/setup.sh
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

# FERRY_BIN=path skips the build and runs that binary instead.
if [[ -n "${FERRY_BIN:-}" ]]; then
    FERRY=$FERRY_BIN
else
    echo "==> building ferry (release)" >&2
    cargo build --release -p ferry
    FERRY="$ROOT/target/release/ferry"
fi

# A free loopback port: nothing answers on it now.
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "quickstart: no free port found" >&2
    return 1
}

PORT=$(free_port)
WORK=$(mktemp -d -t ferry-quickstart.XXXXXX)
chmod 755 "$WORK"
cleanup() {
    pg_stop "$WORK/pg" || true
    rm -rf "$WORK"
}
trap cleanup EXIT

pg_start "$WORK/pg" "$PORT"
SRC=$(pg_url "$PORT" src)
DST=$(pg_url "$PORT" dst)
psql_on() {
    local db=$1
    shift
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d "$db" "$@"
}

TABLE_DDL="CREATE TABLE items (
    id bigint primary key,
    customer_id int not null,
    amount numeric(12,2) not null,
    status text not null,
    note text,
    created_at timestamptz not null)"

echo "==> creating databases src and dst, generating $ROWS rows" >&2
psql_on postgres -c "CREATE DATABASE src" -c "CREATE DATABASE dst"
psql_on src -c "$TABLE_DDL"
psql_on dst -c "$TABLE_DDL"
psql_on src -c "
INSERT INTO items
SELECT g,
       (g * 7919) % 100000,
       ((g * 37) % 10000000) / 100.0,
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[g % 4 + 1],
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'note ' || g END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, $ROWS::bigint) AS g" -c "ANALYZE items"

echo "==> ferry local --workers $WORKERS" >&2
START_NS=$(date +%s%N)
"$FERRY" local \
    --source "$SRC" \
    --target "$DST" \
    --query 'SELECT * FROM items' \
    --table public.items \
    --workers "$WORKERS"
ELAPSED_MS=$((($(date +%s%N) - START_NS) / 1000000))

CHECK="SELECT count(*) || ' ' || coalesce(sum(hashtext(t::text)::bigint), 0) FROM items t"
read -r SRC_COUNT SRC_SUM < <(psql_on src -At -c "$CHECK")
read -r DST_COUNT DST_SUM < <(psql_on dst -At -c "$CHECK")

printf '\n%-8s %12s %24s\n' "" "count" "checksum"
printf '%-8s %12s %24s\n' "source" "$SRC_COUNT" "$SRC_SUM"
printf '%-8s %12s %24s\n' "target" "$DST_COUNT" "$DST_SUM"
printf 'copy took %d.%03d s\n' $((ELAPSED_MS / 1000)) $((ELAPSED_MS % 1000))

if [[ "$SRC_COUNT" == "$DST_COUNT" && "$SRC_SUM" == "$DST_SUM" ]]; then
    echo "MATCH: target equals source"
else
    echo "MISMATCH: target differs from source" >&2
    exit 1
fi
