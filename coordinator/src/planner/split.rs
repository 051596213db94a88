//! Equal-row chunk bounds from a sorted sample of the key, so skewed keys do
//! not make one giant chunk.

use ferry_common::proto::{ChunkBounds, KeyTuple};
use ferry_connectors::sample::KeySample;

/// Chunks of about `chunk_size` rows from a key sample, and how the job was
/// split (for people): one chunk below `min_rows` or `chunk_size` rows,
/// else equal-row key ranges, plus a chunk for NULL keys when there are any.
/// `key` names the key column in the explanation.
pub fn split_sample(
    s: &KeySample,
    key: &str,
    chunk_size: u64,
    min_rows: u64,
) -> (Vec<ChunkBounds>, String) {
    if s.rows < min_rows || s.rows <= chunk_size {
        let why = format!(
            "one chunk: {} rows, below min_rows_for_parallel {min_rows} or chunk_size {chunk_size}",
            s.rows
        );
        return (vec![ChunkBounds::all()], why);
    }
    let bounds = equal_row_boundaries(&s.keys, s.non_null_rows, chunk_size);
    let mut chunks = range_chunks(bounds);
    if s.null_rows > 0 {
        chunks.push(ChunkBounds::null_key());
    }
    let why = format!(
        "key ranges on {key} with equal row counts ({} sampled keys: {})",
        s.keys.len(),
        s.how
    );
    (chunks, why)
}

/// Boundaries that cut `rows` keys, of which `sample` is a sorted uniform
/// sample (one value per key column), into chunks of about `chunk_size`
/// rows. Duplicates collapse, so a single key never spans two chunks.
pub fn equal_row_boundaries(sample: &[KeyTuple], rows: u64, chunk_size: u64) -> Vec<KeyTuple> {
    let chunks = rows.div_ceil(chunk_size.max(1));
    if chunks <= 1 || sample.is_empty() {
        return Vec::new();
    }
    let m = sample.len() as u64;
    let mut out: Vec<KeyTuple> = Vec::with_capacity(chunks as usize);
    for i in 1..chunks {
        let idx = (i * m / chunks) as usize;
        let b = &sample[idx.min(sample.len() - 1)];
        if out.last() != Some(b) && Some(b) != sample.first() {
            out.push(b.clone());
        }
    }
    out
}

/// Half-open ranges between consecutive boundaries, open at both ends, so
/// every non-NULL key falls in exactly one.
pub fn range_chunks(boundaries: Vec<KeyTuple>) -> Vec<ChunkBounds> {
    let mut out = Vec::with_capacity(boundaries.len() + 1);
    let mut lo: Option<KeyTuple> = None;
    for hi in boundaries {
        out.push(ChunkBounds::range(lo.take(), Some(hi.clone())));
        lo = Some(hi);
    }
    out.push(ChunkBounds::range(lo, None));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::plan::Bounds;
    use ferry_common::proto::KeyValue;

    fn int(v: i64) -> KeyTuple {
        KeyTuple::of(vec![KeyValue::from_int(v)])
    }

    #[test]
    fn boundaries_follow_the_sample_not_the_domain() {
        // 90% of keys in 1..100, 10% spread to 10,000
        let mut keys: Vec<i64> = (0..900).map(|i| 1 + i / 9).collect();
        keys.extend((0..100).map(|i| 100 + i * 100));
        keys.sort_unstable();
        let sample: Vec<KeyTuple> = keys.iter().map(|k| int(*k)).collect();
        let b = equal_row_boundaries(&sample, 1000, 100);
        assert!(b.len() >= 8, "{b:?}");
        let dense = b
            .iter()
            .filter(|k| k.to_string().parse::<i64>().unwrap_or(i64::MAX) < 100)
            .count();
        assert!(dense >= 7, "{b:?}");
    }

    #[test]
    fn one_chunk_needs_no_boundary() {
        assert!(equal_row_boundaries(&[int(1)], 10, 100).is_empty());
    }

    #[test]
    fn ranges_cover_the_domain_once() {
        let chunks = range_chunks(vec![int(10), int(20)]);
        assert_eq!(chunks.len(), 3);
        assert!(matches!(
            chunks[0].shape(),
            Bounds::Range {
                lo: None,
                hi: Some(_)
            }
        ));
        assert!(matches!(
            chunks[2].shape(),
            Bounds::Range {
                lo: Some(_),
                hi: None
            }
        ));
        let Bounds::Range {
            lo: Some(lo),
            hi: Some(hi),
        } = chunks[1].shape()
        else {
            panic!("middle chunk is closed on both ends");
        };
        assert_eq!((lo.to_string(), hi.to_string()), ("10".into(), "20".into()));
    }

    #[test]
    fn a_composite_key_cuts_inside_a_first_column_value() {
        // three values of the first column, 1,000 of the second under each
        let sample: Vec<KeyTuple> = (0..3)
            .flat_map(|a| {
                (0..1000)
                    .map(move |b| KeyTuple::of(vec![KeyValue::from_int(a), KeyValue::from_int(b)]))
            })
            .collect();
        let b = equal_row_boundaries(&sample, 3000, 100);
        assert_eq!(b.len(), 29, "{b:?}");
        assert!(b.windows(2).all(|w| w[0] != w[1]));
    }
}
