//! Where `EtcdStore` keeps each record, and in what form.
//!
//! Store format 3 (this version writes it) keeps a job's records apart from
//! those of older versions, so a leader of format 2 never sees them (it would
//! read a job with no chunk records as finished):
//!
//! | key | value |
//! |---|---|
//! | `v3/jobs/<job>` | `JobRecord` |
//! | `v3/plans/<job>/<first>` | `ChunkPlanPage`: the bounds of chunks `first…`, written once at planning |
//! | `v3/chunks/<job>/<n>` | `ChunkRecord` holding only state; exists once the chunk has left its planned state |
//!
//! A planned chunk without a state key is PENDING at attempt 0, version 0:
//! its first lease compares `mod_revision == 0` (the key is absent), so two
//! leases of it cannot both land. At 1,000,000 chunks a plan is about 1,000
//! pages (25 transactions) instead of 1,000,000 keys, and a finished chunk's
//! key holds about 40 bytes instead of 150.
//!
//! Jobs stored by format 2 stay where they are (`jobs/<job>`, each chunk's
//! whole record at `jobs/<job>/chunks/<n>`) and are continued there; a job's
//! layout is where its record was found.

use ferry_common::proto::{ChunkPlanPage, ChunkRecord};
use prost::Message;

/// Chunks per plan page: 1,000 chunks of an integer key are about 25 KiB.
pub(super) const PLAN_PAGE_CHUNKS: usize = 1_000;
/// A plan page closes early past this size (wide text keys).
pub(super) const PLAN_PAGE_BYTES: usize = 256 * 1024;
/// A transaction of plan pages stays under this many bytes: etcd refuses
/// requests over 1.5 MiB (`--max-request-bytes`), and keys and the leader
/// fence add a little.
pub(super) const PLAN_TXN_BYTES: usize = 1024 * 1024;
/// Operations per transaction: etcd takes at most 128 (`--max-txn-ops`).
pub(super) const TXN_OPS: usize = 100;

/// Where a job's records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// Store format 3: `v3/jobs/`, plan pages, state-only chunk keys.
    Paged,
    /// Store format 2: `jobs/<job>` with each chunk's whole record under it.
    Legacy,
}

/// The keys of one store prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (no trailing slash).
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// `<prefix>/<rest>`.
    pub(super) fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// The store prefix itself.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A job's record.
    pub(super) fn job(&self, layout: Layout, job: &str) -> String {
        match layout {
            Layout::Paged => self.key(&format!("v3/jobs/{job}")),
            Layout::Legacy => self.key(&format!("jobs/{job}")),
        }
    }

    /// Prefix of a job's chunk keys (ends with `/`).
    pub(super) fn chunks(&self, layout: Layout, job: &str) -> String {
        match layout {
            Layout::Paged => self.key(&format!("v3/chunks/{job}/")),
            Layout::Legacy => self.key(&format!("jobs/{job}/chunks/")),
        }
    }

    /// Chunk `n`'s key (zero-padded, so keys sort by number).
    pub(super) fn chunk(&self, layout: Layout, job: &str, n: u32) -> String {
        format!("{}{n:010}", self.chunks(layout, job))
    }

    /// Prefix of a job's plan pages (ends with `/`).
    pub(super) fn plans(&self, job: &str) -> String {
        self.key(&format!("v3/plans/{job}/"))
    }

    /// The plan page starting at chunk `first`.
    pub(super) fn plan(&self, job: &str, first: u32) -> String {
        format!("{}{first:010}", self.plans(job))
    }

    /// Chunk `n`'s assignment (under its worker's lease).
    pub(super) fn assign(&self, job: &str, n: u32) -> String {
        format!("{}{n:010}", self.assigns(job))
    }

    /// Prefix of a job's assignments (ends with `/`).
    pub(super) fn assigns(&self, job: &str) -> String {
        self.key(&format!("assign/{job}/"))
    }

    /// An idempotent submit's request key.
    pub(super) fn request(&self, request_id: &str) -> String {
        self.key(&format!("requests/{request_id}"))
    }
}

/// The chunk number at the end of a chunk key.
pub(super) fn chunk_no(key: &[u8]) -> Option<u32> {
    let key = std::str::from_utf8(key).ok()?;
    key.rsplit('/').next()?.parse().ok()
}

/// The value kept at a format-3 chunk key: the record without what the key
/// and the plan pages hold (job id, number, range, bounds).
pub(super) fn state_only(chunk: &ChunkRecord) -> Vec<u8> {
    ChunkRecord {
        job_id: String::new(),
        chunk_no: 0,
        range: String::new(),
        bounds: None,
        ..chunk.clone()
    }
    .encode_to_vec()
}

/// A job's plan as pages, in chunk order: `(first chunk, encoded page)`.
/// A page holds up to `PLAN_PAGE_CHUNKS` chunks and closes early past
/// `PLAN_PAGE_BYTES` (a chunk's bounds alone may pass it).
pub(super) fn plan_pages(chunks: &[ChunkRecord]) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut page = ChunkPlanPage::default();
    let mut bytes = 0;
    for c in chunks {
        let bounds = c.bounds.clone().unwrap_or_default();
        let size = bounds.encoded_len() + 3;
        let full = page.bounds.len() >= PLAN_PAGE_CHUNKS || bytes + size > PLAN_PAGE_BYTES;
        if !page.bounds.is_empty() && full {
            out.push((page.first, page.encode_to_vec()));
            page = ChunkPlanPage::default();
            bytes = 0;
        }
        if page.bounds.is_empty() {
            page.first = c.chunk_no;
        }
        page.bounds.push(bounds);
        bytes += size;
    }
    if !page.bounds.is_empty() {
        out.push((page.first, page.encode_to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::proto::{ChunkBounds, KeyTuple, KeyValue};

    fn chunk(n: u32, text: usize) -> ChunkRecord {
        let v = |s: String| Some(KeyTuple::of(vec![KeyValue::from_text(s)]));
        ChunkRecord {
            job_id: "j1".into(),
            chunk_no: n,
            bounds: Some(ChunkBounds::range(v("a".repeat(text)), v(format!("{n}")))),
            ..Default::default()
        }
    }

    #[test]
    fn pages_cover_every_chunk_in_order() {
        let chunks: Vec<ChunkRecord> = (1..=2_345).map(|n| chunk(n, 1)).collect();
        let pages = plan_pages(&chunks);
        assert_eq!(pages.len(), 3);
        let mut next = 1;
        for (first, bytes) in pages {
            let page = ChunkPlanPage::decode(&bytes[..]).expect("decodes");
            assert_eq!(page.first, first);
            assert_eq!(first, next);
            for (i, b) in page.bounds.iter().enumerate() {
                assert_eq!(Some(b), chunks[(first as usize) + i - 1].bounds.as_ref());
            }
            next += page.bounds.len() as u32;
        }
        assert_eq!(next, 2_346);
    }

    #[test]
    fn wide_bounds_close_pages_early() {
        // 100 KiB bounds: two fit under PLAN_PAGE_BYTES, the third opens a page
        let chunks: Vec<ChunkRecord> = (1..=5).map(|n| chunk(n, 100 * 1024)).collect();
        let pages = plan_pages(&chunks);
        assert_eq!(
            pages.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            vec![1, 3, 5]
        );
        assert!(pages.iter().all(|(_, b)| b.len() <= PLAN_PAGE_BYTES));
    }

    #[test]
    fn state_only_drops_what_key_and_plan_hold() {
        let mut c = chunk(7, 10);
        c.range = "id from a to 7".into();
        c.worker_id = "w1".into();
        c.attempt = 2;
        let slim = ChunkRecord::decode(&state_only(&c)[..]).expect("decodes");
        assert_eq!(slim.job_id, "");
        assert_eq!(slim.chunk_no, 0);
        assert_eq!(slim.range, "");
        assert_eq!(slim.bounds, None);
        assert_eq!((slim.worker_id.as_str(), slim.attempt), ("w1", 2));
    }

    #[test]
    fn keys_sort_by_number_and_parse_back() {
        let k = Keys::new("/ferry/");
        assert_eq!(k.job(Layout::Paged, "j1"), "/ferry/v3/jobs/j1");
        assert_eq!(k.job(Layout::Legacy, "j1"), "/ferry/jobs/j1");
        let a = k.chunk(Layout::Paged, "j1", 9);
        let b = k.chunk(Layout::Paged, "j1", 10);
        assert!(a < b);
        assert_eq!(chunk_no(b.as_bytes()), Some(10));
        assert_eq!(
            k.chunk(Layout::Legacy, "j1", 3),
            "/ferry/jobs/j1/chunks/0000000003"
        );
    }
}
