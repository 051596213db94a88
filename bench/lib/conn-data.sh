# The `items` table in PostgreSQL, MariaDB and SQLite for bench/connectors.sh, and the files the
# targets' own loaders read (exported once, before any timing). Sourced; expects WORK, ROWS,
# conn-servers.sh and log().

PG_ITEMS="id bigint primary key, customer_id int not null, amount numeric(12,2) not null,
  status text not null, note text, created_at timestamptz not null"
MY_ITEMS="id bigint primary key, customer_id int not null, amount decimal(12,2) not null,
  status text not null, note text null, created_at datetime(6) not null"
# SQLite stores created_at as text ('2024-01-01 00:00:01+00:00'); the declared type tells Ferry
# it is an instant, as in tests/src/items_fixture.rs.
SQ_ITEMS="id integer primary key, customer_id integer not null, amount decimal(12,2) not null,
  status text not null, note text, created_at timestamptz not null"

sq() { sqlite3 -batch "$@"; }

# make_data: src.items in PostgreSQL (common.sh make_items), copied into MariaDB src.items and
# SQLite src.db through files; empty target tables everywhere; loader input files in $WORK/files.
make_data() {
  local f=$WORK/files
  mkdir -p "$f"
  chmod 755 "$WORK" "$f"
  log "generating $ROWS rows in PostgreSQL src.items"
  psql -XqAt -d src -v ON_ERROR_STOP=1 <<SQL >/dev/null
create table items ($PG_ITEMS);
insert into items select g, g % 10007, (g % 100000) / 100.0, (array['new','paid','shipped','void'])[g % 4 + 1],
  case when g % 7 = 0 then null else md5(g::text) end, timestamptz '2024-01-01' + g * interval '1 second'
from generate_series(1, $ROWS) g;
vacuum analyze items;
SQL
  psql -XqAt -d dst -c "create table items ($PG_ITEMS)" >/dev/null

  # PostgreSQL -> file for MariaDB's LOAD DATA (tab-separated, \N for NULL, UTC datetime)
  psql -XqAt -d src -c "\\copy (select id, customer_id, amount, status, note,
    to_char(created_at, 'YYYY-MM-DD HH24:MI:SS.US') from items) to '$f/pg-for-my.tsv'"
  # PostgreSQL -> file for SQLite's .import (.import has no NULL: note NULL becomes '')
  psql -XqAt -d src -c "\\copy (select id, customer_id, amount, status, coalesce(note, ''),
    to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') || '+00:00' from items) to '$f/pg-for-sq.tsv'"

  log "copying the rows into MariaDB src.items and SQLite src.db"
  my -e "create table src.items ($MY_ITEMS); create table dst.items ($MY_ITEMS)"
  my --local-infile=1 src -e "set time_zone = '+00:00';
    load data local infile '$f/pg-for-my.tsv' into table items"
  sq "$WORK/src.db" "create table items ($SQ_ITEMS);"
  sq "$WORK/dst.db" "create table items ($SQ_ITEMS);"
  psql -XqAt -d src -c "\\copy (select id, customer_id, amount, status, note,
    to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') || '+00:00' from items) to '$f/pg-full.tsv'"
  # NULL notes through a sentinel: .import cannot write NULL
  sed 's/\\N/__NULL__/' "$f/pg-full.tsv" >"$f/pg-sentinel.tsv"
  sq "$WORK/src.db" -cmd ".mode tabs" ".import $f/pg-sentinel.tsv items" \
    "update items set note = null where note = '__NULL__';"
  rm -f "$f/pg-full.tsv" "$f/pg-sentinel.tsv"

  # MariaDB -> file for PostgreSQL's COPY (server-side INTO OUTFILE, \N for NULL)
  rm -f "$MY_FILES/my-for-pg.tsv"
  my src -e "set time_zone = '+00:00'; select * into outfile '$MY_FILES/my-for-pg.tsv' from items"
  mv "$MY_FILES/my-for-pg.tsv" "$f/my-for-pg.tsv"
  # SQLite -> file for PostgreSQL's COPY
  sq "$WORK/src.db" -cmd ".mode tabs" -cmd ".nullvalue \\N" -cmd ".headers off" \
    "select * from items;" >"$f/sq-for-pg.tsv"
  chmod 644 "$f"/*.tsv

  log "counts: pg $(count pg src) mariadb $(count my src) sqlite $(count sq src)"
}

# count DB src|dst: rows of items there.
count() {
  case $1 in
    pg) psql -XqAt -d "$2" -c "select count(*) from items" ;;
    my) my "$2" -e "select count(*) from items" ;;
    sq) sq "$WORK/$2.db" "select count(*) from items;" ;;
  esac
}

# empty_target DB: the target's items emptied and the server's dirty pages flushed.
empty_target() {
  case $1 in
    pg) psql -XqAt -d dst -c "truncate items" -c "checkpoint" >/dev/null ;;
    my) my dst -e "truncate table items" ;;
    sq) sq "$WORK/dst.db" "delete from items;" ;;
  esac
}

# url DB src|dst: the connection URL Ferry and Sling use.
url() {
  case $1 in
    pg) echo "postgres://postgres@127.0.0.1:$PG_PORT/$2" ;;
    my) echo "mysql://root@127.0.0.1:$MY_PORT/$2" ;;
    sq) echo "sqlite://$WORK/$2.db" ;;
  esac
}

# loader_cmd SRC DST: the target's own bulk loader reading the file exported from SRC.
loader_cmd() {
  local f=$WORK/files
  case $2 in
    my) echo "mariadb --no-defaults --local-infile=1 -h127.0.0.1 -P$MY_PORT -uroot dst -e \"set time_zone = '+00:00'; load data local infile '$f/$1-for-my.tsv' into table items\"" ;;
    pg) echo "psql -XqAt -d dst -c \"\\copy items from '$f/$1-for-pg.tsv'\"" ;;
    sq) echo "sqlite3 -batch $WORK/dst.db -cmd '.mode tabs' '.import $f/$1-for-sq.tsv items'" ;;
  esac
}
