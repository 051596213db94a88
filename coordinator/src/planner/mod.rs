//! The planner (the guide's ChunkManager): reads the source query and the
//! target table through the connector, checks that they fit, and splits the
//! job into key ranges of equal row counts. It decides; the connector runs
//! every statement.

pub mod adaptive;
mod columns;
pub mod driving;
pub mod dry_run;
mod estimate;
mod keyless;
mod keys;
mod new_table;
pub mod prepare;
mod split;
pub mod typed;
mod upsert_key;

pub use split::{equal_row_boundaries, range_chunks, split_sample};

use ferry_common::connections::ConnectionRegistry;
use ferry_common::errors::{DbFailure, ErrorClass};
use ferry_common::ident::{parse_column, parse_table, QualifiedName};
use ferry_common::pg_tls::Encryption;
use ferry_common::proto::{ChunkBounds, ColumnPlan, JobSpec, KeyColumn, TableRef, WriteMode};
use ferry_connectors::db::{target as db_target, Conn};
use ferry_connectors::kind::DbKind;
use ferry_connectors::postgres::describe::{self, resolve_part};
use ferry_connectors::postgres::select::ChunkSelect;
use ferry_connectors::postgres::snapshot::{self, SnapshotId};
use ferry_connectors::postgres::sql::{show_ident, show_table};
use ferry_connectors::postgres::{sample, scan, session};
use tokio_postgres::Client;

use columns::{Columns, STRING_TYPES};

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

/// The result of planning a job.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Chunk bounds in key order.
    pub chunks: Vec<ChunkBounds>,
    /// Rows the source query returns (estimated when sampled by blocks).
    pub rows: u64,
    /// How the job was split, for people.
    pub strategy: String,
    /// The target table, exact spelling.
    pub target: TableRef,
    /// The query's columns and where they land.
    pub columns: Vec<ColumnPlan>,
    /// The columns the job is split on (empty: one chunk).
    pub key: Vec<KeyColumn>,
    /// Workers read chunks with index scans off.
    pub source_bitmap_scan: bool,
    /// Most chunks in flight the target takes at once (SQLite: one writer),
    /// lowering the job's `max_workers`.
    pub max_in_flight: Option<u32>,
    /// The query chunks run when the planner added the key to the user's
    /// (empty: the user's query).
    pub source_query: String,
}

impl Plan {
    /// A plan of `chunks` chunks that select nothing, for benchmarks and tests
    /// of the scheduler that need no database.
    pub fn synthetic(chunks: u32) -> Self {
        let key = KeyColumn {
            name: "id".into(),
            r#type: "bigint".into(),
            target: "id".into(),
            position: 0,
            target_type: "bigint".into(),
        };
        let bound = |n: u32| {
            Some(ferry_common::proto::KeyTuple::of(vec![
                ferry_common::proto::KeyValue::from_int(i64::from(n)),
            ]))
        };
        Self {
            chunks: (1..=chunks)
                .map(|n| ChunkBounds::range(bound(n), bound(n + 1)))
                .collect(),
            rows: 0,
            strategy: format!("synthetic: {chunks} chunks"),
            target: TableRef::new("public", "synthetic"),
            columns: vec![ColumnPlan {
                source: "id".into(),
                target: "id".into(),
                cast: String::new(),
                verify_type: "bigint".into(),
                ..Default::default()
            }],
            key: vec![key],
            source_bitmap_scan: false,
            max_in_flight: None,
            source_query: String::new(),
        }
    }
}

/// Opens a planner session on connection `name`, tagged with the job, and
/// says whether it is encrypted.
async fn open_reporting(
    conns: &ConnectionRegistry,
    name: &str,
    job_id: &str,
) -> Result<(Client, Encryption), PlanError> {
    let url = conns
        .url(name)
        .map_err(|e| PlanError::invalid(e.to_string()))?;
    let (client, encryption) = session::open_reporting(name, url).await?;
    session::tag(&client, &format!("ferry:plan:{job_id}")).await?;
    Ok((client, encryption))
}

/// A table name as typed, shown the way PostgreSQL would show it once resolved.
fn show_typed(name: &QualifiedName) -> String {
    match name.parts.as_slice() {
        [schema, table] => show_table(&TableRef::new(resolve_part(schema), resolve_part(table))),
        _ => show_ident(&resolve_part(name.last())),
    }
}

/// A column name as typed, resolved to its exact spelling.
fn column(input: &str, what: &str) -> Result<String, PlanError> {
    parse_column(input)
        .map(|p| resolve_part(&p))
        .map_err(|e| PlanError::invalid(format!("invalid {what}: {e}")))
}

/// Resolves the job's target table, or explains that it does not exist.
pub async fn resolve_target(target: &Client, spec: &JobSpec) -> Result<TableRef, PlanError> {
    let name = parse_table(&spec.table)
        .map_err(|e| PlanError::invalid(format!("invalid target table: {e}")))?;
    describe::resolve_table(target, &name).await?.ok_or_else(|| {
        PlanError::invalid(format!(
            "target table {} does not exist in connection '{}': create it first (Ferry copies rows, not schemas)",
            show_typed(&name),
            spec.target
        ))
    })
}

/// Plans a job: connects to source and target, checks the query against the
/// target table, and splits by key. Writes nothing (a dry run calls only
/// this; a run prepares the target around it, see `prepare::plan_for_run`);
/// with `--create-table` and no target table, plans against the table that
/// would be created.
pub async fn plan_job(
    spec: &JobSpec,
    job_id: &str,
    conns: &ConnectionRegistry,
) -> Result<Plan, PlanError> {
    plan_job_in(spec, job_id, conns, None).await
}

/// A job's query as the planner and the chunks run it: without surrounding
/// white space and trailing semicolons.
pub fn bare_query(query: &str) -> &str {
    query.trim().trim_end_matches(';').trim()
}

/// Like `plan_job`, sampling (PostgreSQL to PostgreSQL) in the job's
/// exported source `snapshot`, so the split sees the rows the chunks read.
pub async fn plan_job_in(
    spec: &JobSpec,
    job_id: &str,
    conns: &ConnectionRegistry,
    snapshot: Option<&SnapshotId>,
) -> Result<Plan, PlanError> {
    let query = bare_query(&spec.query);
    if query.is_empty() {
        return Err(PlanError::invalid(
            "the query is empty: pass --query 'SELECT …'",
        ));
    }
    let both_postgres = typed::kind_of(conns, &spec.source)? == DbKind::Postgres
        && typed::kind_of(conns, &spec.target)? == DbKind::Postgres;
    if !both_postgres {
        return typed::plan_typed(spec, job_id, conns, query).await;
    }
    let (source, source_tls) = open_reporting(conns, &spec.source, job_id).await?;
    let (target, target_tls) = open_reporting(conns, &spec.target, job_id).await?;

    let query_cols = describe::describe_query(&source, query).await?;
    let (table, target_cols) = new_table::target_or_new(&target, spec, &query_cols).await?;
    let explicit = spec
        .columns
        .iter()
        .map(|c| column(c, "target column"))
        .collect::<Result<Vec<_>, _>>()?;
    let cols = Columns::map(&query_cols, &target_cols, &explicit, &show_table(&table))?;
    let key = keys::choose(&source, spec, &cols, &query_cols).await?;
    let key = (!key.is_empty()).then_some(key);

    // Parse, analyse and cast-check the full SELECT before touching any data.
    check_select(&source, query, &cols).await?;

    let chunk_size = spec.chunk_size.unwrap_or(50_000).max(1);
    let parallel = spec.parallel.unwrap_or(true);
    let min_rows = spec.min_rows_for_parallel.unwrap_or(0);
    let mut bitmap = false;
    let mut keys: Vec<KeyColumn> = Vec::new();
    // a query without a usable output key splits on its driving table
    let mut source_query = String::new();
    let mut key_shown = None;
    let mut why_one = None;
    let key = match key {
        None if parallel => {
            match keyless::choose(&source, query, &query_cols, &cols, chunk_size, min_rows).await? {
                keyless::Choice::Key {
                    key,
                    source_query: q,
                    shown,
                } => {
                    source_query = q;
                    key_shown = Some(shown);
                    Some(vec![key])
                }
                keyless::Choice::Ctid(c) => {
                    return Ok(Plan {
                        chunks: c.chunks,
                        rows: c.rows,
                        target: table,
                        columns: cols.plan,
                        key: vec![c.key],
                        source_bitmap_scan: false,
                        max_in_flight: None,
                        source_query: c.source_query,
                        strategy: format!(
                            "{}; source {}, target {}",
                            c.strategy,
                            source_tls.label(),
                            target_tls.label()
                        ),
                    });
                }
                keyless::Choice::One(why) => {
                    why_one = Some(why);
                    None
                }
            }
        }
        other => other,
    };
    let run_query = if source_query.is_empty() {
        query
    } else {
        source_query.as_str()
    };
    let (rows, chunks, strategy) = match key {
        Some(key) if parallel => {
            let auto = adaptive::target_bytes(spec);
            begin_sampling(&source, snapshot).await?;
            let s =
                sample::sample_keys(&source, run_query, &key, chunk_size, auto.is_some()).await?;
            end_sampling(&source, snapshot).await?;
            let shown = key_shown.unwrap_or_else(|| keys::shown(&key));
            let (chunks, why) = match auto {
                Some(bytes) => adaptive::split_by_bytes(&s, &shown, bytes, min_rows),
                None => split_sample(&s, &shown, chunk_size, min_rows),
            };
            keys = key;
            // the first chunk is a key range whenever there are several
            if let (true, Some(first)) = (chunks.len() > 1, chunks.first()) {
                let select = ChunkSelect {
                    query: run_query,
                    columns: &cols.plan,
                    key: &keys,
                    bounds: first,
                };
                bitmap = scan::prefer_bitmap_scan(&source, &select).await?;
            }
            (s.rows, chunks, why)
        }
        other => {
            begin_sampling(&source, snapshot).await?;
            let rows = sample::count_rows(&source, query).await?;
            end_sampling(&source, snapshot).await?;
            let why = match other {
                Some(_) => "one chunk: parallel processing is disabled".to_string(),
                None => {
                    if rows >= min_rows && rows > chunk_size {
                        tracing::warn!(
                            job = %job_id,
                            rows,
                            reason = why_one.as_deref().unwrap_or(""),
                            "no key column to split on: copying in one chunk; pass --key COL[,COL] to run in parallel"
                        );
                    }
                    why_one.unwrap_or_else(|| "one chunk: no key column".to_string())
                }
            };
            (rows, vec![ChunkBounds::all()], why)
        }
    };
    // a plan of one chunk runs the user's query as it is
    if chunks.len() <= 1 && !source_query.is_empty() {
        source_query.clear();
        keys.clear();
    }
    Ok(Plan {
        chunks,
        rows,
        target: table,
        columns: cols.plan,
        key: keys,
        source_bitmap_scan: bitmap,
        max_in_flight: None,
        source_query,
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

/// Opens the transaction the planner samples in: the job's snapshot, if any.
async fn begin_sampling(source: &Client, snapshot: Option<&SnapshotId>) -> Result<(), PlanError> {
    match snapshot {
        Some(id) => Ok(snapshot::begin_in(source, id).await?),
        None => Ok(()),
    }
}

/// Ends the transaction `begin_sampling` opened.
async fn end_sampling(source: &Client, snapshot: Option<&SnapshotId>) -> Result<(), PlanError> {
    match snapshot {
        Some(_) => Ok(session::exec(source, "COMMIT").await?),
        None => Ok(()),
    }
}

/// Checks every conversion and prepares the full SELECT on the source; a
/// conversion the source cannot do is reported with the column and both
/// types.
async fn check_select(source: &Client, query: &str, cols: &Columns) -> Result<(), PlanError> {
    for cast in &cols.casts {
        let strings = STRING_TYPES.contains(&cast.from_base.as_str())
            || STRING_TYPES.contains(&cast.to_base.as_str());
        if !strings && !describe::assignable(source, &cast.from_base, &cast.to_base).await? {
            return Err(PlanError::invalid(format!(
                "column '{}' is {} in the source but {} in the target, and there is no conversion PostgreSQL applies on insert: change the target column's type or convert the column in the query",
                cast.column, cast.from, cast.to
            )));
        }
    }
    let all = ChunkBounds::all();
    let select = ChunkSelect {
        query,
        columns: &cols.plan,
        key: &[],
        bounds: &all,
    };
    let Err(f) = describe::prepares(source, &select.binary().0).await else {
        return Ok(());
    };
    if f.class == ErrorClass::Transient {
        return Err(f.into());
    }
    for cast in &cols.casts {
        let one = [ColumnPlan {
            source: cast.column.clone(),
            target: cast.column.clone(),
            cast: cast.to.clone(),
            verify_type: String::new(),
            ..Default::default()
        }];
        let probe = ChunkSelect {
            query,
            columns: &one,
            key: &[],
            bounds: &all,
        };
        if let Err(pe) = describe::prepares(source, &probe.binary().0).await {
            return Err(PlanError::invalid(format!(
                "column '{}' is {} in the source but {} in the target, and there is no conversion: {}; change the target column or cast it in the query",
                cast.column, cast.from, cast.to, pe.message
            )));
        }
    }
    Err(f.into())
}

/// What a write mode needs prepared in the target before chunks run.
#[derive(Debug, Clone)]
pub struct TargetPrep {
    /// The table chunks load into.
    pub load: TableRef,
    /// Upsert key columns, exact spelling (mode upsert).
    pub upsert_key: Vec<String>,
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
    let mut prep = TargetPrep {
        load: plan.target.clone(),
        upsert_key: upsert_key::check_upsert_key(spec, job_id, conns, plan, true).await?,
    };
    if mode == WriteMode::Replace {
        let mut target = open_target(conns, spec, job_id).await?;
        let load = db_target::load_table(target.kind(), &plan.target, job_id);
        db_target::create_load_table(&mut target, &plan.target, &load).await?;
        prep.load = load;
    }
    Ok(prep)
}

/// Opens a session on the job's target for one-time steps (truncate, swap).
pub async fn open_target(
    conns: &ConnectionRegistry,
    spec: &JobSpec,
    job_id: &str,
) -> Result<Conn, PlanError> {
    typed::open(conns, &spec.target, job_id).await
}
