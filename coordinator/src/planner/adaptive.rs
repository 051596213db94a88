//! `--chunk-size auto`: chunks sized by duration rather than rows. At plan
//! time the key is sampled together with each sampled row's size in bytes,
//! and key ranges are cut at equal shares of the estimated bytes, so a range
//! of wide rows holds proportionally fewer rows than a range of narrow ones.
//! The bytes a chunk aims at are `chunk_seconds × ESTIMATED_BYTES_PER_SECOND`.

use ferry_common::proto::{ChunkBounds, JobSpec, KeyTuple};
use ferry_connectors::sample::KeySample;

use super::split::range_chunks;

/// Seconds an auto-sized chunk aims at unless `--chunk-seconds` says otherwise.
pub const DEFAULT_CHUNK_SECONDS: u32 = 30;

/// Bytes per second one chunk stream is assumed to move before any chunk
/// has been measured: binary COPY between PostgreSQL servers moves 30–60
/// MiB/s per stream on a local network into an unindexed table (the
/// README's 1M-row run: ~600,000 rows/s over two workers at ~100 bytes a
/// row); indexes, TLS and a remote network cut that several times, so the
/// estimate is a quarter of the lower figure.
pub const ESTIMATED_BYTES_PER_SECOND: u64 = 8 * 1024 * 1024;

/// The bytes an auto-sized chunk of `spec` aims at, or None when the job's
/// chunks are sized by rows.
pub fn target_bytes(spec: &JobSpec) -> Option<u64> {
    if spec.chunk_size_auto != Some(true) {
        return None;
    }
    let seconds = spec.chunk_seconds.unwrap_or(DEFAULT_CHUNK_SECONDS).max(1);
    Some(u64::from(seconds) * ESTIMATED_BYTES_PER_SECOND)
}

/// Chunks of about `target` bytes from a key sample that measured each
/// row's width, and how the job was split (for people); one chunk below
/// `min_rows` rows or `target` bytes. `key` names the key in the
/// explanation. A sample without widths counts every row alike.
pub fn split_by_bytes(
    s: &KeySample,
    key: &str,
    target: u64,
    min_rows: u64,
) -> (Vec<ChunkBounds>, String) {
    let widths: Vec<u64> = if s.widths.len() == s.keys.len() {
        s.widths.clone()
    } else {
        vec![1; s.keys.len()]
    };
    let sampled: u64 = widths.iter().sum();
    let mean = sampled as f64 / widths.len().max(1) as f64;
    let bytes = (mean * s.non_null_rows as f64) as u64;
    let chunks = bytes.div_ceil(target.max(1));
    if s.rows < min_rows || chunks <= 1 {
        let why = format!(
            "one chunk: {} rows of about {} bytes, below min_rows_for_parallel {min_rows} or one auto-sized chunk of {}",
            s.rows,
            mib(bytes),
            mib(target)
        );
        return (vec![ChunkBounds::all()], why);
    }
    let mut out = range_chunks(equal_byte_boundaries(&s.keys, &widths, chunks));
    if s.null_rows > 0 {
        out.push(ChunkBounds::null_key());
    }
    let why = format!(
        "key ranges on {key} of about {} each (--chunk-size auto: {}s at an estimated {}/s; {} of rows in all, {} sampled keys with their widths: {})",
        mib(target),
        target / ESTIMATED_BYTES_PER_SECOND,
        mib(ESTIMATED_BYTES_PER_SECOND),
        mib(bytes),
        s.keys.len(),
        s.how
    );
    (out, why)
}

/// Boundaries that cut a sorted sample into `chunks` ranges of equal summed
/// `widths`. Duplicates collapse, so a single key never spans two chunks.
fn equal_byte_boundaries(sample: &[KeyTuple], widths: &[u64], chunks: u64) -> Vec<KeyTuple> {
    let total: u64 = widths.iter().sum();
    if chunks <= 1 || sample.is_empty() || total == 0 {
        return Vec::new();
    }
    let mut out: Vec<KeyTuple> = Vec::with_capacity(chunks as usize);
    let mut next = 1u64;
    let mut sum = 0u64;
    for (k, w) in sample.iter().zip(widths) {
        // the share of bytes before this key decides the chunk it starts
        while next < chunks && sum as u128 * chunks as u128 >= next as u128 * total as u128 {
            if out.last() != Some(k) && Some(k) != sample.first() {
                out.push(k.clone());
            }
            next += 1;
        }
        sum += w;
    }
    out
}

/// Bytes for people: `12.5 MiB`.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::proto::KeyValue;

    #[test]
    fn wide_rows_make_chunks_of_fewer_rows() {
        // keys 0..10,000 of 100 bytes, then 10,000..10,100 of 10,000 bytes:
        // equal halves
        let keys: Vec<KeyTuple> = (0..10_100)
            .map(|k| KeyTuple::of(vec![KeyValue::from_int(k)]))
            .collect();
        let widths: Vec<u64> = (0..10_100)
            .map(|k| if k < 10_000 { 100 } else { 10_000 })
            .collect();
        let cuts = equal_byte_boundaries(&keys, &widths, 4);
        let at: Vec<String> = cuts.iter().map(|k| k.to_string()).collect();
        assert_eq!(at, vec!["5000", "10000", "10050"]);
    }

    #[test]
    fn auto_is_off_unless_asked_for() {
        let mut spec = JobSpec::default();
        assert_eq!(target_bytes(&spec), None);
        spec.chunk_size_auto = Some(true);
        assert_eq!(target_bytes(&spec), Some(30 * ESTIMATED_BYTES_PER_SECOND));
        spec.chunk_seconds = Some(2);
        assert_eq!(target_bytes(&spec), Some(2 * ESTIMATED_BYTES_PER_SECOND));
    }
}
