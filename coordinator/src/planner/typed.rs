//! Plans jobs whose rows travel as typed values: every pair of databases but
//! PostgreSQL → PostgreSQL (whose rows pass through as binary COPY). Each
//! query column maps onto a target column by Ferry's type rules: exactly,
//! checked value by value (a value that would not land exactly is a rejected
//! row), or not at all (a planning error naming the column and both types).

use ferry_common::connections::ConnectionRegistry;
use ferry_common::db::DbRole;
use ferry_common::ident::{parse_column, parse_table, NamePart};
use ferry_common::proto::{ChunkBounds, ColumnPlan, JobSpec, KeyColumn, TableRef};
use ferry_connectors::coltype;
use ferry_connectors::columns::{SourceColumn, TableColumn};
use ferry_connectors::db::{self, catalog, target, Conn};
use ferry_connectors::kind::DbKind;
use ferry_connectors::types::{mapping, FerryType};

use super::{split_sample, Plan, PlanError};

/// Opens a planner session on connection `name`.
pub(super) async fn open(
    conns: &ConnectionRegistry,
    name: &str,
    job_id: &str,
) -> Result<Conn, PlanError> {
    let url = conns
        .url(name)
        .map_err(|e| PlanError::invalid(e.to_string()))?;
    Ok(db::open(
        DbRole::Planner,
        name,
        url,
        Some(&format!("ferry:plan:{job_id}")),
    )
    .await?)
}

/// The kind of database connection `name` names.
pub fn kind_of(conns: &ConnectionRegistry, name: &str) -> Result<DbKind, PlanError> {
    let url = conns
        .url(name)
        .map_err(|e| PlanError::invalid(e.to_string()))?;
    Ok(DbKind::of_url(name, url)?)
}

fn part(input: &str, what: &str) -> Result<NamePart, PlanError> {
    parse_column(input).map_err(|e| PlanError::invalid(format!("invalid {what}: {e}")))
}

fn listed(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Key column types that split into ranges the same way in every database.
fn splittable(t: &FerryType) -> bool {
    match t {
        FerryType::Int { bits, unsigned } => !(*unsigned && *bits == 64),
        FerryType::Decimal { .. }
        | FerryType::Text { .. }
        | FerryType::Date
        | FerryType::Timestamp
        | FerryType::Uuid => true,
        _ => false,
    }
}

/// Plans a job between `source_kind` and `target_kind` (not both PostgreSQL).
pub async fn plan_typed(
    spec: &JobSpec,
    job_id: &str,
    conns: &ConnectionRegistry,
    query: &str,
) -> Result<Plan, PlanError> {
    let target_kind = kind_of(conns, &spec.target)?;
    let source_kind = kind_of(conns, &spec.source)?;
    if super::adaptive::target_bytes(spec).is_some() {
        return Err(PlanError::invalid(format!(
            "--chunk-size auto sizes chunks from PostgreSQL row widths and needs a PostgreSQL source and target (this job copies {} to {}): pass --chunk-size ROWS",
            source_kind.name(),
            target_kind.name()
        )));
    }
    let mut source = open(conns, &spec.source, job_id).await?;
    let mut target = open(conns, &spec.target, job_id).await?;
    catalog::check_writable(&mut target, &spec.target).await?;
    let query_cols = catalog::describe_query(&mut source, query).await?;
    let source_key = catalog::primary_key(&mut source, query, &query_cols).await?;
    let key_name = if spec.key_column.is_empty() {
        source_key.clone()
    } else {
        let names: Vec<String> = query_cols.iter().map(|c| c.name.clone()).collect();
        let p = part(&spec.key_column, "key column")?;
        match catalog::find_column(source_kind, &p, &names) {
            Some(n) => Some(n.to_string()),
            None => {
                return Err(PlanError::invalid(format!(
                    "key column '{}' is not a column of the query (columns: {}); pass --key with one of them",
                    p.text,
                    listed(&names)
                )))
            }
        }
    };
    let resolved = resolve_or_new(
        &mut target,
        spec,
        &query_cols,
        source_kind,
        source_key.as_deref(),
    )
    .await?;
    // a table a run would create (dry run) is planned from its definition
    let (table, target_cols) = match resolved {
        Resolved::Exists(table) => {
            let cols = catalog::describe_table(&mut target, &table).await?;
            (table, cols)
        }
        Resolved::New(new) => {
            let cols = new.columns(&query_cols);
            (new.table, cols)
        }
    };
    let columns = map_columns(spec, &query_cols, &target_cols, target_kind)?;
    let key = match key_name {
        Some(name) => Some(key_column(&name, &query_cols, &target_cols, &columns)?),
        None => None,
    };

    let chunk_size = spec.chunk_size.unwrap_or(50_000).max(1);
    let min_rows = spec.min_rows_for_parallel.unwrap_or(0);
    let (rows, chunks, strategy, keys) = match key {
        Some(key) if spec.parallel.unwrap_or(true) => {
            let s = catalog::sample_keys(&mut source, query, &key, chunk_size).await?;
            let (chunks, why) = split_sample(&s, &format!("'{}'", key.name), chunk_size, min_rows);
            (s.rows, chunks, why, vec![key])
        }
        other => {
            let rows = catalog::count_rows(&mut source, query).await?;
            let why = if other.is_some() {
                "one chunk: parallel processing is disabled"
            } else {
                if rows >= min_rows && rows > chunk_size {
                    tracing::warn!(
                        job = %job_id,
                        rows,
                        "no key column to split on (the query does not read one table with a single-column primary key): copying in one chunk; pass --key COL to run in parallel"
                    );
                }
                "one chunk: no key column"
            };
            (rows, vec![ChunkBounds::all()], why.to_string(), Vec::new())
        }
    };
    // SQLite takes one writer at a time: more chunks in flight would only
    // wait for its lock.
    let one_writer = target_kind == DbKind::Sqlite && chunks.len() > 1;
    Ok(Plan {
        chunks,
        rows,
        strategy: format!(
            "{strategy}; {} to {}, rows as typed values{}",
            source_kind.name(),
            target_kind.name(),
            if one_writer {
                "; one chunk at a time (SQLite takes one writer)"
            } else {
                ""
            }
        ),
        target: table,
        columns,
        key: keys,
        source_bitmap_scan: false,
        max_in_flight: one_writer.then_some(1),
        source_query: String::new(),
    })
}

/// Creates the target table from the query's columns when it does not exist
/// (`--create-table`; a run calls it before planning, a dry run never does).
pub async fn create_if_missing(
    spec: &JobSpec,
    job_id: &str,
    conns: &ConnectionRegistry,
    query: &str,
) -> Result<(), PlanError> {
    let source_kind = kind_of(conns, &spec.source)?;
    let mut source = open(conns, &spec.source, job_id).await?;
    let mut target = open(conns, &spec.target, job_id).await?;
    let query_cols = catalog::describe_query(&mut source, query).await?;
    let source_key = catalog::primary_key(&mut source, query, &query_cols).await?;
    let resolved = resolve_or_new(
        &mut target,
        spec,
        &query_cols,
        source_kind,
        source_key.as_deref(),
    )
    .await?;
    let Resolved::New(new) = resolved else {
        return Ok(());
    };
    target::create_table(&mut target, &new.table, &new.defs, &new.primary_key).await?;
    let shown = &new.shown;
    tracing::info!(table = %shown, columns = new.defs.len(), "target table created (--create-table)");
    let name = parse_table(&spec.table)
        .map_err(|e| PlanError::invalid(format!("invalid target table: {e}")))?;
    catalog::resolve_table(&mut target, &name)
        .await?
        .map(|_| ())
        .ok_or_else(|| PlanError::invalid(format!("target table {shown} was created but cannot be found: check the connection's default schema")))
}

/// A target table that does not exist yet and `--create-table` would create.
#[derive(Debug, Clone)]
pub struct NewTable {
    /// Where it would be created.
    pub table: TableRef,
    /// The table as typed, for messages.
    pub shown: String,
    /// Column names and their types in the target database's spelling.
    pub defs: Vec<(String, String)>,
    /// Primary key columns (the source table's, when the query reads one table that has one).
    pub primary_key: Vec<String>,
}

impl NewTable {
    /// The columns the new table would have, as describing it would return them.
    fn columns(&self, query_cols: &[SourceColumn]) -> Vec<TableColumn> {
        self.defs
            .iter()
            .zip(query_cols)
            .map(|((name, ty), c)| TableColumn {
                name: name.clone(),
                ty: c.ty.clone(),
                db_type: ty.clone(),
                base_type: ty.split('(').next().unwrap_or(ty).trim().to_string(),
                nullable: !self.primary_key.contains(name),
            })
            .collect()
    }
}

/// The target table as it is, or as `--create-table` would create it.
enum Resolved {
    /// The table exists.
    Exists(TableRef),
    /// It does not; a run creates it.
    New(NewTable),
}

/// The target table, or with `--create-table` the table a run would create
/// from the mapped types when it does not exist (with the source table's
/// primary key, when the query reads one table that has one).
async fn resolve_or_new(
    target: &mut Conn,
    spec: &JobSpec,
    query_cols: &[SourceColumn],
    source_kind: DbKind,
    source_key: Option<&str>,
) -> Result<Resolved, PlanError> {
    let name = parse_table(&spec.table)
        .map_err(|e| PlanError::invalid(format!("invalid target table: {e}")))?;
    if let Some(t) = catalog::resolve_table(target, &name).await? {
        return Ok(Resolved::Exists(t));
    }
    let shown = name
        .parts
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join(".");
    if !spec.create_table {
        return Err(PlanError::invalid(format!(
            "target table {shown} does not exist in connection '{}': create it first, or pass --create-table to create it from the query's columns",
            spec.target
        )));
    }
    let kind = target.kind();
    let names: Vec<String> = if spec.columns.is_empty() {
        query_cols.iter().map(|c| c.name.clone()).collect()
    } else {
        spec.columns
            .iter()
            .map(|c| part(c, "target column").map(|p| p.text))
            .collect::<Result<_, _>>()?
    };
    if names.len() != query_cols.len() {
        return Err(PlanError::invalid(format!(
            "--columns names {} target columns but the query returns {}",
            names.len(),
            query_cols.len()
        )));
    }
    let mut defs = Vec::with_capacity(names.len());
    for (n, c) in names.iter().zip(query_cols) {
        let ty = if kind == source_kind {
            c.db_type.clone()
        } else if let FerryType::Other(t) = &c.ty {
            return Err(PlanError::invalid(format!(
                "--create-table: column '{}' has type {t}, which has no {} equivalent: convert it in the query (e.g. to text)",
                c.name,
                kind.name()
            )));
        } else {
            target::column_type(kind, &c.ty)
        };
        defs.push((n.clone(), ty));
    }
    let table = match name.parts.as_slice() {
        [schema, table] => TableRef::new(schema.text.clone(), table.text.clone()),
        _ => TableRef::new(default_schema(kind), name.last().text.clone()),
    };
    let primary_key: Vec<String> = source_key
        .and_then(|k| query_cols.iter().position(|c| c.name == k))
        .map(|i| vec![names[i].clone()])
        .unwrap_or_default();
    Ok(Resolved::New(NewTable {
        table,
        shown,
        defs,
        primary_key,
    }))
}

/// Where an unqualified new table goes.
fn default_schema(kind: DbKind) -> String {
    match kind {
        DbKind::Postgres => "public".into(),
        DbKind::Sqlite => "main".into(),
        // the session's database: an empty schema is left unqualified
        DbKind::MySql => String::new(),
    }
}

/// Maps the query's columns onto the target's, checking every type pair.
fn map_columns(
    spec: &JobSpec,
    query: &[SourceColumn],
    table: &[TableColumn],
    kind: DbKind,
) -> Result<Vec<ColumnPlan>, PlanError> {
    let target_names: Vec<String> = table.iter().map(|c| c.name.clone()).collect();
    let wanted: Vec<NamePart> = if spec.columns.is_empty() {
        query
            .iter()
            .map(|c| NamePart {
                text: c.name.clone(),
                quoted: true,
            })
            .collect()
    } else {
        if spec.columns.len() != query.len() {
            return Err(PlanError::invalid(format!(
                "--columns names {} target columns but the query returns {} ({})",
                spec.columns.len(),
                query.len(),
                listed(&query.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
            )));
        }
        spec.columns
            .iter()
            .map(|c| part(c, "target column"))
            .collect::<Result<_, _>>()?
    };
    let mut plan = Vec::with_capacity(query.len());
    for (qc, want) in query.iter().zip(&wanted) {
        let Some(tname) = catalog::find_column(kind, want, &target_names) else {
            return Err(PlanError::invalid(format!(
                "columns do not match: query column '{}' has no column '{}' in the target table (target columns: {}); rename it with AS, drop it from the query, or pass --columns",
                qc.name,
                want.text,
                listed(&target_names)
            )));
        };
        let Some(tc) = table.iter().find(|t| t.name == tname) else {
            continue;
        };
        if mapping(&qc.ty, &tc.ty).is_none() {
            return Err(PlanError::invalid(format!(
                "column '{}' is {} in the source but {} in the target, and Ferry has no lossless conversion between them: change the target column's type or convert the column in the query",
                qc.name, qc.db_type, tc.db_type
            )));
        }
        plan.push(ColumnPlan {
            source: qc.name.clone(),
            target: tc.name.clone(),
            source_type: Some(coltype::to_proto(&qc.ty)),
            target_type: Some(coltype::to_proto(&tc.ty)),
            target_db_type: tc.base_type.clone(),
            ..Default::default()
        });
    }
    Ok(plan)
}

/// The key column `name` (a query column of a splittable type) and where it lands.
fn key_column(
    name: &str,
    query: &[SourceColumn],
    table: &[TableColumn],
    columns: &[ColumnPlan],
) -> Result<KeyColumn, PlanError> {
    let Some(position) = query.iter().position(|c| c.name == name) else {
        return Err(PlanError::invalid(format!(
            "key column '{name}' is not a column of the query"
        )));
    };
    let col = &query[position];
    if !splittable(&col.ty) {
        return Err(PlanError::invalid(format!(
            "key column '{name}' has type {}, which cannot be split into ranges across databases; pass --key with an integer, decimal, text, date, timestamp or uuid column",
            col.db_type
        )));
    }
    let landing = &columns[position].target;
    let target_type = table
        .iter()
        .find(|t| &t.name == landing)
        .map(|t| t.db_type.clone())
        .unwrap_or_default();
    Ok(KeyColumn {
        name: name.to_string(),
        r#type: col.db_type.clone(),
        target: landing.clone(),
        position: position as u32,
        target_type,
    })
}
