//! `ferry verify` for jobs whose rows crossed database kinds: each chunk is
//! read from both sides through the connector and digested by Ferry from
//! values converted to the target columns' types, so equal rows hash equally
//! whatever each database stores.

use ferry_common::proto::{ChunkBounds, ColumnPlan, JobRecord, KeyColumn, TableRef};
use ferry_connectors::coltype;
use ferry_connectors::db::digest::chunk_digest;
use ferry_connectors::db::read::ChunkRead;
use ferry_connectors::db::target::select_all;
use ferry_connectors::db::Conn;
use ferry_connectors::types::FerryType;
use ferry_connectors::value::RowDigest;

use crate::error::{CoordinatorError, Reason};

/// Whether the job's plan carries typed columns (every pair but PostgreSQL →
/// PostgreSQL).
pub fn is_typed(job: &JobRecord) -> bool {
    !job.columns.is_empty()
        && job
            .columns
            .iter()
            .all(|c| c.source_type.is_some() && c.target_type.is_some())
}

/// How one side of a typed job is read: its query, columns, key and types.
pub struct Side {
    query: String,
    columns: Vec<ColumnPlan>,
    key: Vec<KeyColumn>,
    types: Vec<FerryType>,
}

/// The source and target sides of a typed job, and the types both are
/// digested in (the target's).
pub struct Sides {
    /// The source query's side.
    pub source: Side,
    /// The target table's side.
    pub target: Side,
    to: Vec<FerryType>,
}

fn types(
    columns: &[ColumnPlan],
    pick: fn(&ColumnPlan) -> Option<&ferry_common::proto::ColumnType>,
) -> Result<Vec<FerryType>, CoordinatorError> {
    columns
        .iter()
        .map(|c| {
            pick(c).and_then(coltype::from_proto).ok_or_else(|| {
                CoordinatorError::precondition(
                    "job_id",
                    Reason::NotPlanned,
                    format!(
                        "column '{}' was planned with a type this coordinator does not know: a newer coordinator planned the job",
                        c.source
                    ),
                )
            })
        })
        .collect()
}

impl Sides {
    /// Both sides of `job`, reading the target's rows from `table`.
    pub fn of(
        job: &JobRecord,
        query: &str,
        table: &TableRef,
        target: &Conn,
    ) -> Result<Self, CoordinatorError> {
        let source_types = types(&job.columns, |c| c.source_type.as_ref())?;
        let to = types(&job.columns, |c| c.target_type.as_ref())?;
        let target_columns = job
            .columns
            .iter()
            .map(|c| ColumnPlan {
                source: c.target.clone(),
                target: c.target.clone(),
                source_type: c.target_type.clone(),
                target_type: c.target_type.clone(),
                target_db_type: c.target_db_type.clone(),
                ..Default::default()
            })
            .collect();
        let target_key = job
            .key
            .iter()
            .map(|k| KeyColumn {
                name: k.target.clone(),
                r#type: k.target_type.clone(),
                target: k.target.clone(),
                position: k.position,
                target_type: k.target_type.clone(),
            })
            .collect();
        Ok(Self {
            source: Side {
                query: query.to_string(),
                columns: job.columns.clone(),
                key: job.key.clone(),
                types: source_types,
            },
            target: Side {
                query: select_all(target.kind(), table),
                columns: target_columns,
                key: target_key,
                types: to.clone(),
            },
            to,
        })
    }

    /// The digest of `side`'s rows in `bounds`.
    pub async fn digest(
        &self,
        conn: &mut Conn,
        side: &Side,
        bounds: &ChunkBounds,
    ) -> Result<RowDigest, CoordinatorError> {
        let read = ChunkRead {
            query: &side.query,
            columns: &side.columns,
            key: &side.key,
            bounds,
            types: &side.types,
            bitmap_scan: false,
            snapshot: None,
        };
        chunk_digest(conn, &read, &self.to)
            .await
            .map_err(|f| CoordinatorError::Database(f.message))
    }
}
