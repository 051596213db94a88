//! Test tables: the `items` shape, deterministic fills, order-independent checksums.

use tokio_postgres::Client;

/// Columns of the `items` test table (the quick start's shape).
pub const ITEMS_COLUMNS: &str = "id bigint primary key, \
     customer_id int not null, \
     amount numeric(12,2) not null, \
     status text not null, \
     note text, \
     created_at timestamptz not null";

/// The `items` columns without the primary key: a target table on which a
/// chunk landing twice shows up as duplicate rows instead of a key violation.
pub fn items_columns_without_key() -> String {
    ITEMS_COLUMNS.replace(" primary key", "")
}

/// Creates `schema_table` with the `items` columns but no primary key (nor
/// any other unique constraint).
pub async fn create_items_table_without_key(client: &Client, schema_table: &str) {
    let sql = format!(
        "CREATE TABLE {schema_table} ({})",
        items_columns_without_key()
    );
    client
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Makes every insert statement into `schema_table` (each COPY of a chunk)
/// take `ms` longer, like a slow or busy target: an `AFTER INSERT … FOR EACH
/// STATEMENT` trigger sleeps once the rows are in, inside the chunk's
/// transaction, before it commits. Chaos tests use it so a multi-million-row
/// job lasts long enough for faults to land mid-job and mid-chunk without
/// burning CPU. Rows are not touched.
pub async fn slow_down_inserts(client: &Client, schema_table: &str, ms: u64) {
    let name = schema_table.replace(['.', '"'], "_");
    let sql = format!(
        "CREATE FUNCTION ferry_test_slow_{name}() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_sleep({secs}); RETURN NULL; END $$; \
         CREATE TRIGGER ferry_test_slow AFTER INSERT ON {schema_table} \
         FOR EACH STATEMENT EXECUTE FUNCTION ferry_test_slow_{name}()",
        secs = ms as f64 / 1000.0
    );
    client
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Creates `schema_table` (e.g. `public.items`) with the `items` columns.
pub async fn create_items_table(client: &Client, schema_table: &str) {
    let sql = format!("CREATE TABLE {schema_table} ({ITEMS_COLUMNS})");
    client
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// INSERT … SELECT of `rows` rows; `g` is the row ordinal 1..=rows and
/// `id_expr` computes the key from it. Values are deterministic; `note` is
/// NULL every 7th row and holds awkward text (tab, newline, backslash, quote,
/// non-ASCII) every 1000th, so a copy that mangles text shows in the checksum.
fn insert_sql(table: &str, id_expr: &str, rows: u64) -> String {
    format!(
        "INSERT INTO {table} (id, customer_id, amount, status, note, created_at) \
         SELECT {id_expr}, \
                (g * 7919) % 100000, \
                ((g * 37) % 10000000) / 100.0, \
                (ARRAY['new', 'paid', 'shipped', 'cancelled'])[g % 4 + 1], \
                CASE WHEN g % 7 = 0 THEN NULL \
                     WHEN g % 1000 = 1 THEN E'tab\\there, nl\\nthere, bs\\\\ quote'' \u{fc}ber ' || g \
                     ELSE 'note ' || g END, \
                timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' \
         FROM generate_series(1, {rows}::bigint) AS g"
    )
}

async fn run_fill(client: &Client, table: &str, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("filling {table}: {e}\n{sql}"));
    // Planners may read pg_stats / reltuples; give them real numbers.
    client
        .batch_execute(&format!("ANALYZE {table}"))
        .await
        .unwrap_or_else(|e| panic!("ANALYZE {table}: {e}"));
}

/// Inserts `rows` rows with ids 1..=rows into `table`, then ANALYZEs it.
pub async fn fill_items(client: &Client, table: &str, rows: u64) {
    run_fill(client, table, &insert_sql(table, "g", rows)).await;
}

/// Inserts `rows` rows whose keys are heavily skewed, then ANALYZEs it.
///
/// The key domain is `1..=rows * 100`. 90 % of the rows take the consecutive
/// ids `1..=rows * 9 / 10`, which lie inside the first 1 % of the domain; the
/// other 10 % are spread evenly over the rest. A planner that cuts the domain
/// into equal-width ranges puts ~90 % of the rows into its first chunk.
pub async fn fill_skewed(client: &Client, table: &str, rows: u64) {
    let (dense, step) = skew_layout(rows);
    let id_expr =
        format!("CASE WHEN g <= {dense} THEN g ELSE {dense} + (g - {dense}) * {step} END");
    run_fill(client, table, &insert_sql(table, &id_expr, rows)).await;
}

/// For `fill_skewed`: the number of densely packed ids and the stride of the rest.
pub fn skew_layout(rows: u64) -> (u64, u64) {
    let dense = rows * 9 / 10;
    let sparse = (rows - dense).max(1);
    let step = ((rows * 100 - dense) / sparse).max(1);
    (dense, step)
}

/// Row count of `table`.
pub async fn row_count(client: &Client, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    client
        .query_one(&sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Order-independent `(row count, checksum)` of `table`: the sum of the
/// rows' text hashes, as text (a bigint sum becomes numeric).
pub async fn table_checksum(client: &Client, table: &str) -> (i64, String) {
    let sql = format!(
        "SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0)::text FROM {table} t"
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    (row.get(0), row.get(1))
}
