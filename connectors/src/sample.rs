//! What a look at a source's key tells the planner, whatever the database,
//! and how large a sample it takes.

use ferry_common::proto::KeyTuple;

/// Sampled keys per planned chunk while the sample is small: the sample's
/// quantiles put each chunk within about 10 % (one standard deviation) of
/// `chunk_size` rows. A block sample's keys come in clusters of one block
/// each, so its 100 blocks per chunk bound its precision whatever the keys.
pub const SAMPLES_PER_CHUNK: u64 = 100;
/// Fewest keys sampled for a parallel plan.
pub const MIN_SAMPLES: u64 = 10_000;
/// Keys sampled at most while that bounds the planner's memory (each key
/// kept costs it ~60 bytes: 30,000 keys, ~2 MiB, whatever the table); jobs
/// of more than 300 chunks get fewer keys per chunk, so their chunks are
/// less even, which matters less the more chunks share the workers.
pub const BOUNDED_SAMPLES: u64 = 30_000;
/// Fewest keys per chunk past `BOUNDED_SAMPLES`, so that every chunk still
/// gets a boundary of its own (the sample grows again past 15,000 chunks).
pub const MIN_SAMPLES_PER_CHUNK: u64 = 2;
/// Most keys sampled in any case.
pub const MAX_SAMPLES: u64 = 1_000_000;

/// How many keys to sample for `chunks` chunks.
pub fn sample_size(chunks: u64) -> u64 {
    let bound = BOUNDED_SAMPLES.max(chunks.saturating_mul(MIN_SAMPLES_PER_CHUNK));
    chunks
        .saturating_mul(SAMPLES_PER_CHUNK)
        .min(bound)
        .clamp(MIN_SAMPLES, MAX_SAMPLES)
}

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
    let want = sample_size(chunks);
    if rows == 0 {
        1.0
    } else {
        (want as f64 / rows as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_bounded_until_chunks_need_more() {
        assert_eq!(sample_size(1), MIN_SAMPLES);
        assert_eq!(sample_size(200), 20_000, "100 keys a chunk");
        assert_eq!(sample_size(1_000), BOUNDED_SAMPLES, "bounded");
        assert_eq!(sample_size(15_000), BOUNDED_SAMPLES);
        assert_eq!(sample_size(100_000), 200_000, "2 keys a chunk");
        assert_eq!(sample_size(u64::MAX), MAX_SAMPLES);
    }
}
