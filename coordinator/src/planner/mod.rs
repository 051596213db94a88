//! The planner (the guide's ChunkManager): reads the source query and the
//! target table, checks that they fit, and splits the job into key ranges of
//! equal row counts.

mod block_sample;
mod chunk_sql;
mod describe;
mod explain;
pub mod replace;
mod scan;
mod split;

pub use chunk_sql::{compose, Cast, ChunkBounds, SelectBuilder, KEY};
pub use split::equal_row_boundaries;

use ferry_common::connections::ConnectionRegistry;
use ferry_common::db::{connect, connect_reporting};
use ferry_common::errors::{DbFailure, ErrorClass};
use ferry_common::ledger::create_ledger_sql;
use ferry_common::proto::{JobSpec, WriteMode};
use ferry_common::sql::{parse_ident, parse_table_name, quote_ident};

use describe::{describe_query, describe_target, detect_primary_key};

/// A planning failure, classed like chunk failures (permanent ones fail the job at once).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    /// Transient (retry planning) or permanent.
    pub class: ErrorClass,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl PlanError {
    /// A permanent planning error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            message: message.into(),
        }
    }
}

impl From<DbFailure> for PlanError {
    fn from(f: DbFailure) -> Self {
        // a data error while planning (a bad cast in the query) is the user's to fix
        let class = match f.class {
            ErrorClass::Transient => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        };
        Self {
            class,
            message: f.message,
        }
    }
}

/// One planned chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChunk {
    /// Its rows as a condition on `{key}` (empty: every row).
    pub predicate: String,
    /// The key range, for people.
    pub range: String,
}

/// The result of planning a job.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Chunks in key order.
    pub chunks: Vec<PlannedChunk>,
    /// Rows the source query returns.
    pub rows: u64,
    /// How the job was split, for people.
    pub strategy: String,
    /// Quoted target table.
    pub target_table: String,
    /// Quoted target columns.
    pub target_columns: Vec<String>,
    /// `SELECT <cast columns> FROM (<query>) AS src`.
    pub select_binary: String,
    /// The same without casts.
    pub select_text: String,
    /// Every column cast to the target's exact type (verify).
    pub select_verify: String,
    /// The key expression in those SELECTs (empty without a key).
    pub key_source: String,
    /// The key's target column, quoted (empty when not copied).
    pub key_target: String,
    /// The key's position in the select list, -1 without one.
    pub key_index: i32,
    /// Workers read chunks with index scans off (see `scan`).
    pub source_bitmap_scan: bool,
}

impl Plan {
    /// A plan of `chunks` chunks that select nothing, for benchmarks and tests
    /// of the scheduler that need no database.
    pub fn synthetic(chunks: u32) -> Self {
        Self {
            chunks: (1..=chunks)
                .map(|n| PlannedChunk {
                    predicate: format!("{KEY} = {n}"),
                    range: format!("synthetic chunk {n}"),
                })
                .collect(),
            rows: 0,
            strategy: format!("synthetic: {chunks} chunks"),
            target_table: "\"public\".\"synthetic\"".into(),
            target_columns: vec!["\"id\"".into()],
            select_binary: "SELECT 1 AS id WHERE false".into(),
            select_text: "SELECT 1 AS id WHERE false".into(),
            select_verify: "SELECT 1 AS id WHERE false".into(),
            key_source: "1".into(),
            key_target: "\"id\"".into(),
            key_index: 0,
            source_bitmap_scan: false,
        }
    }
}

/// Plans a job: connects to source and target, checks the query against the
/// target table, ensures the ledger exists, and splits by key.
pub async fn plan_job(
    spec: &JobSpec,
    conns: &ConnectionRegistry,
    ledger_schema: &str,
) -> Result<Plan, PlanError> {
    let source_url = conns
        .url(&spec.source)
        .map_err(|e| PlanError::invalid(e.to_string()))?;
    let target_url = conns
        .url(&spec.target)
        .map_err(|e| PlanError::invalid(e.to_string()))?;
    let table = parse_table_name(&spec.table).map_err(PlanError::invalid)?;
    let query = spec.query.trim().trim_end_matches(';').trim();
    if query.is_empty() {
        return Err(PlanError::invalid(
            "the query is empty: pass --query 'SELECT …'",
        ));
    }

    let (source, source_tls) = connect_reporting(&spec.source, source_url).await?;
    let (target, target_tls) = connect_reporting(&spec.target, target_url).await?;

    let query_cols = describe_query(&source, query).await?;
    let target_cols = describe_target(&target, &spec.target, &table).await?;
    let mut builder = SelectBuilder::new(query, &query_cols, &target_cols, &spec.columns, &table)?;

    let key = if !spec.key_column.is_empty() {
        let key = parse_ident(&spec.key_column).map_err(PlanError::invalid)?;
        Some(builder.key_column(&key)?)
    } else {
        match detect_primary_key(&source, &query_cols).await? {
            Some(k) => Some(builder.key_column(&k)?),
            None => None,
        }
    };

    // Parse, analyse and cast-check the full SELECT before touching any data.
    check_select(&source, &builder).await?;

    target
        .batch_execute(&create_ledger_sql(ledger_schema))
        .await
        .map_err(|e| {
            let f = ferry_common::errors::classify_pg(&e);
            PlanError {
                class: f.class,
                message: format!(
                    "cannot create the ledger table {}.ledger in '{}': {}",
                    quote_ident(ledger_schema),
                    spec.target,
                    f.message
                ),
            }
        })?;

    let chunk_size = spec.chunk_size.unwrap_or(50_000).max(1);
    let parallel = spec.parallel.unwrap_or(true);
    let min_rows = spec.min_rows_for_parallel.unwrap_or(0);
    let mut bitmap = false;
    let (rows, chunks, strategy) = match key {
        Some(key) if parallel => {
            let position = usize::try_from(builder.key_index()).ok();
            let sample = split::sample_keys(&source, query, &key, position, chunk_size).await?;
            if sample.rows < min_rows || sample.rows <= chunk_size {
                let why = format!(
                    "one chunk: {} rows, below min_rows_for_parallel {min_rows} or chunk_size {chunk_size}",
                    sample.rows
                );
                (sample.rows, vec![builder.chunk(&ChunkBounds::All)], why)
            } else {
                let bounds = equal_row_boundaries(&sample.keys, sample.non_null_rows, chunk_size);
                let mut chunks = builder.range_chunks(&bounds);
                if let Some(first) = chunks.first() {
                    bitmap = scan::prefer_bitmap_scan(
                        &source,
                        &compose(
                            &builder.select_binary(),
                            &first.predicate,
                            &builder.key_source(),
                        ),
                    )
                    .await;
                }
                if sample.null_rows > 0 {
                    chunks.push(builder.chunk(&ChunkBounds::Null));
                }
                let why = format!(
                    "key ranges on {} with equal row counts ({} sampled keys: {})",
                    quote_ident(&key.name),
                    sample.keys.len(),
                    sample.how
                );
                (sample.rows, chunks, why)
            }
        }
        other => {
            let rows = split::count_rows(&source, query).await?;
            let why = match other {
                Some(_) => "one chunk: parallel processing is disabled".to_string(),
                None => {
                    if rows >= min_rows && rows > chunk_size {
                        tracing::warn!(
                            rows,
                            "no key column to split on (the query does not read one table with a single-column primary key): copying in one chunk; pass --key COL to run in parallel"
                        );
                    }
                    "one chunk: no key column".to_string()
                }
            };
            (rows, vec![builder.chunk(&ChunkBounds::All)], why)
        }
    };
    Ok(Plan {
        chunks,
        rows,
        target_table: table.quoted(),
        target_columns: builder.target_column_list(),
        select_binary: builder.select_binary(),
        select_text: builder.select_text(),
        select_verify: builder.select_verify(),
        key_source: builder.key_source(),
        key_target: builder.key_target(),
        key_index: builder.key_index(),
        source_bitmap_scan: bitmap,
        strategy: format!(
            "{}; source {}, target {}",
            if bitmap {
                format!(
                    "{strategy}; chunks read by bitmap heap scans (the source is stored in key order)"
                )
            } else {
                strategy
            },
            source_tls.label(),
            target_tls.label()
        ),
    })
}

/// Parses, analyses and cast-checks the full SELECT on the source; a cast the
/// source cannot do is reported with the column and both types.
async fn check_select(
    source: &tokio_postgres::Client,
    builder: &SelectBuilder,
) -> Result<(), PlanError> {
    for cast in builder.casts() {
        check_assignable(source, cast).await?;
    }
    let Err(e) = source.prepare(&builder.select(&ChunkBounds::All)).await else {
        return Ok(());
    };
    for cast in builder.casts() {
        let probe = format!(
            "SELECT src.{}::{} FROM ({}) AS src LIMIT 0",
            quote_ident(&cast.column),
            cast.to,
            builder.query()
        );
        if let Err(pe) = source.prepare(&probe).await {
            return Err(PlanError::invalid(format!(
                "column '{}' is {} in the source but {} in the target, and there is no conversion: {}; change the target column or cast it in the query",
                cast.column,
                cast.from,
                cast.to,
                ferry_common::errors::classify_pg(&pe).message
            )));
        }
    }
    Err(PlanError::from(ferry_common::errors::classify_pg(&e)))
}

/// String types: values convert to and from them through text input and
/// output, the way an INSERT of text would, so a bad value is a bad row.
const STRING_TYPES: &[&str] = &["text", "character varying", "character"];

/// Refuses a type pair PostgreSQL would not convert on assignment (an INSERT):
/// only an explicit cast exists (jsonb to integer) or none at all. Strings
/// convert through text input (bad values become rejected rows).
async fn check_assignable(source: &tokio_postgres::Client, cast: &Cast) -> Result<(), PlanError> {
    if STRING_TYPES.contains(&cast.from_base.as_str())
        || STRING_TYPES.contains(&cast.to_base.as_str())
    {
        return Ok(());
    }
    let row = source
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_cast
                             WHERE castsource = to_regtype($1) AND casttarget = to_regtype($2)
                               AND castcontext IN ('i', 'a'))
                    OR (to_regtype($1) = to_regtype($2))",
            &[&cast.from_base, &cast.to_base],
        )
        .await
        .map_err(|e| PlanError::from(ferry_common::errors::classify_pg(&e)))?;
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    Err(PlanError::invalid(format!(
        "column '{}' is {} in the source but {} in the target, and there is no conversion PostgreSQL applies on insert: change the target column's type or convert the column in the query",
        cast.column, cast.from, cast.to
    )))
}

/// What a write mode needs prepared in the target before chunks run.
#[derive(Debug, Clone, Default)]
pub struct TargetPrep {
    /// Quoted table the chunks load into.
    pub load_table: String,
    /// Quoted upsert key columns (mode upsert).
    pub upsert_keys: Vec<String>,
}

/// Prepares the target for the job's write mode: checks the upsert key has a
/// unique index, or creates the table a replace job loads into.
pub async fn prepare_target(
    spec: &JobSpec,
    job_id: &str,
    conns: &ConnectionRegistry,
    plan: &Plan,
) -> Result<TargetPrep, PlanError> {
    let mode = WriteMode::try_from(spec.mode).unwrap_or(WriteMode::Append);
    let table = parse_table_name(&spec.table).map_err(PlanError::invalid)?;
    let mut prep = TargetPrep {
        load_table: plan.target_table.clone(),
        upsert_keys: Vec::new(),
    };
    if !matches!(mode, WriteMode::Upsert | WriteMode::Replace) {
        if !spec.upsert_key.is_empty() {
            return Err(PlanError::invalid(
                "--upsert-key only applies to --mode upsert",
            ));
        }
        return Ok(prep);
    }
    let url = conns
        .url(&spec.target)
        .map_err(|e| PlanError::invalid(e.to_string()))?;
    let target = connect(&spec.target, url).await?;
    if mode == WriteMode::Replace {
        let load = replace::load_table(&table, job_id);
        replace::create_load_table(&target, &table, &load).await?;
        prep.load_table = load.quoted();
        return Ok(prep);
    }
    if spec.upsert_key.is_empty() {
        return Err(PlanError::invalid(
            "mode upsert needs --upsert-key COL[,COL]: the target columns that identify a row",
        ));
    }
    let mut keys = Vec::new();
    for k in &spec.upsert_key {
        let k = parse_ident(k).map_err(PlanError::invalid)?;
        if !plan.target_columns.contains(&quote_ident(&k)) {
            return Err(PlanError::invalid(format!(
                "upsert key column '{k}' is not one of the columns copied into {table}"
            )));
        }
        keys.push(k);
    }
    let mut sorted = keys.clone();
    sorted.sort();
    let row = target
        .query_one(
            "SELECT EXISTS (
                SELECT 1 FROM pg_index x
                 WHERE x.indrelid = $1::text::regclass AND x.indisunique AND x.indpred IS NULL
                   AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a
                         WHERE a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)) = $2::text[]
                   AND x.indnkeyatts = cardinality($2::text[]))",
            &[&table.quoted(), &sorted],
        )
        .await
        .map_err(|e| PlanError::from(ferry_common::errors::classify_pg(&e)))?;
    if !row.get::<_, bool>(0) {
        return Err(PlanError::invalid(format!(
            "mode upsert needs a unique index or primary key on ({}) in {table}: create one, or pick --upsert-key columns that have one",
            keys.join(", ")
        )));
    }
    prep.upsert_keys = keys.iter().map(|k| quote_ident(k)).collect();
    Ok(prep)
}
