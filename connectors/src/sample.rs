//! What a look at a source's key tells the planner, whatever the database,
//! and how large a sample it takes.

use ferry_common::proto::KeyTuple;

/// Sampled keys per planned chunk: the sample's quantiles put each chunk
/// within about 10 % (one standard deviation) of `chunk_size` rows. A block
/// sample's keys come in clusters of one block each, so its 100 blocks per
/// chunk bound its precision whatever the keys; each key kept costs the
/// planner ~60 bytes, so more keys per chunk would make its memory grow with
/// the chunk count for no better split (issue 16, cost as the table grows).
pub const SAMPLES_PER_CHUNK: u64 = 100;
/// Fewest keys sampled for a parallel plan.
pub const MIN_SAMPLES: u64 = 10_000;
/// Most keys sampled, bounding the planner's memory.
pub const MAX_SAMPLES: u64 = 1_000_000;

/// A sample of a query's key.
#[derive(Debug, Clone)]
pub struct KeySample {
    /// Rows the query returns (estimated when sampled by blocks).
    pub rows: u64,
    /// Rows whose key is not NULL.
    pub non_null_rows: u64,
    /// Rows with a NULL in any key column.
    pub null_rows: u64,
    /// A uniform sample of the non-NULL keys (one value per key column), in
    /// key order.
    pub keys: Vec<KeyTuple>,
    /// Each sampled row's size in bytes, beside `keys` (empty when the
    /// sample did not measure rows: chunks are then cut by rows).
    pub widths: Vec<u64>,
    /// How the sample was taken, for people.
    pub how: String,
}

/// The share of `rows` to sample for chunks of `chunk_size` rows.
pub fn sample_fraction(rows: u64, chunk_size: u64) -> f64 {
    let chunks = rows.div_ceil(chunk_size.max(1));
    let want = (chunks * SAMPLES_PER_CHUNK).clamp(MIN_SAMPLES, MAX_SAMPLES);
    if rows == 0 {
        1.0
    } else {
        (want as f64 / rows as f64).min(1.0)
    }
}
