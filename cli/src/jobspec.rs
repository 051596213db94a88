//! Job flags shared by `ferry submit` and `ferry local`.

use ferry_common::proto::{Consistency, JobSpec, RetryPolicy, WriteMode};

/// How rows are written, as a flag.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Mode {
    /// Add rows to what the table holds.
    Append,
    /// Truncate the table once, before the first chunk.
    Truncate,
    /// Insert, or update rows whose --upsert-key exists.
    Upsert,
    /// Load a new table, index it once, swap it in at the end.
    Replace,
}

/// Whether chunks read the source as of one instant, as a flag.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ConsistencyFlag {
    /// One exported snapshot for every chunk (PostgreSQL sources).
    Snapshot,
    /// Each chunk reads the source as it is when the chunk starts.
    None,
}

/// Job tuning flags; unset ones take the coordinator's MAPPER_* defaults.
#[derive(clap::Args, Clone, Debug)]
pub struct Tuning {
    /// Column to split on, `a,b` for several (default: the primary key of
    /// the one table the query reads).
    #[arg(long)]
    pub key: Option<String>,
    /// Rows per chunk (default MAPPER_CHUNK_SIZE, 50,000), or `auto`: chunks
    /// of about --chunk-seconds each, sized by the rows' bytes (PostgreSQL).
    #[arg(long, value_parser = parse_chunk_size)]
    pub chunk_size: Option<ChunkSize>,
    /// Seconds an auto-sized chunk aims at (with --chunk-size auto; default 30).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub chunk_seconds: Option<u32>,
    /// Below this many rows the job runs as one chunk (default MAPPER_MIN_ROWS_FOR_PARALLEL).
    #[arg(long)]
    pub min_rows_for_parallel: Option<u64>,
    /// Target columns receiving the query's columns in order, comma-separated (default: by name).
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// How rows are written.
    #[arg(long, value_enum, default_value = "append")]
    pub mode: Mode,
    /// Create the target table from the query's columns (types mapped to the
    /// target database) when it does not exist.
    #[arg(long)]
    pub create_table: bool,
    /// Target columns identifying a row, for --mode upsert (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub upsert_key: Vec<String>,
    /// Fail the job once more rows than this are rejected.
    #[arg(long)]
    pub max_failed_rows: Option<u64>,
    /// Fail the job once rejected rows pass this share of its rows (0..1).
    #[arg(long, value_parser = parse_ratio)]
    pub max_failed_ratio: Option<f64>,
    /// Retries per chunk after a transient failure (default MAPPER_PARALLEL_MAX_RETRIES).
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// Backoff before the first retry, in milliseconds.
    #[arg(long)]
    pub retry_initial_delay_ms: Option<u64>,
    /// Cap on the retry backoff, in milliseconds.
    #[arg(long)]
    pub retry_max_delay_ms: Option<u64>,
    /// Whether every chunk reads the source as of one instant (default:
    /// snapshot for PostgreSQL sources, none for MySQL and SQLite).
    #[arg(long, value_enum)]
    pub consistency: Option<ConsistencyFlag>,
    /// Keep max_workers chunks in flight instead of adapting below it to
    /// the rows/s the target takes (default MAPPER_ADAPTIVE_CONCURRENCY, on).
    #[arg(long)]
    pub fixed_workers: bool,
}

impl Tuning {
    /// The job spec for these flags.
    pub fn spec(
        &self,
        source: &str,
        query: &str,
        target: &str,
        table: &str,
        max_workers: Option<u32>,
    ) -> JobSpec {
        JobSpec {
            source: source.to_string(),
            query: query.to_string(),
            target: target.to_string(),
            table: table.to_string(),
            columns: self.columns.clone(),
            key_column: self.key.clone().unwrap_or_default(),
            chunk_size: match self.chunk_size {
                Some(ChunkSize::Rows(n)) => Some(n),
                _ => None,
            },
            chunk_size_auto: matches!(self.chunk_size, Some(ChunkSize::Auto)).then_some(true),
            chunk_seconds: self.chunk_seconds,
            max_workers,
            adaptive_concurrency: self.fixed_workers.then_some(false),
            min_rows_for_parallel: self.min_rows_for_parallel,
            retry: Some(RetryPolicy {
                enabled: None,
                max_retries: self.max_retries,
                initial_delay_ms: self.retry_initial_delay_ms,
                max_delay_ms: self.retry_max_delay_ms,
            }),
            mode: match self.mode {
                Mode::Append => WriteMode::Append,
                Mode::Truncate => WriteMode::Truncate,
                Mode::Upsert => WriteMode::Upsert,
                Mode::Replace => WriteMode::Replace,
            } as i32,
            parallel: None,
            upsert_key: self.upsert_key.clone(),
            create_table: self.create_table,
            max_failed_rows: self.max_failed_rows,
            max_failed_ratio: self.max_failed_ratio,
            consistency: match self.consistency {
                Some(ConsistencyFlag::Snapshot) => Consistency::Snapshot,
                Some(ConsistencyFlag::None) => Consistency::None,
                None => Consistency::Unspecified,
            } as i32,
        }
    }
}

/// `--chunk-size`: rows, or sized by duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkSize {
    /// About this many rows per chunk.
    Rows(u64),
    /// About --chunk-seconds per chunk, by the rows' bytes.
    Auto,
}

/// Parses `auto` or a positive row count.
fn parse_chunk_size(s: &str) -> Result<ChunkSize, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(ChunkSize::Auto);
    }
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(ChunkSize::Rows(n)),
        _ => Err(format!(
            "'{s}' is neither a row count above 0 nor 'auto' (e.g. --chunk-size 50000)"
        )),
    }
}

/// Parses a share between 0 and 1.
fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a share between 0 and 1 (e.g. 0.001)")),
    }
}
