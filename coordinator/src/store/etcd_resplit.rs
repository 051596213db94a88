//! Re-splitting the end of a format-3 plan in one etcd transaction
//! (`--chunk-size auto`, see `scheduler::resplit`). The chunks replaced were
//! never leased (planned, or PENDING from an earlier re-split); the
//! transaction
//!
//! - compares each replaced chunk's key against the version the scheduler
//!   read (absent for a planned chunk: a lease that landed first makes it
//!   fail), and that the plan pages it rewrites are unchanged;
//! - rewrites the plan page holding the first replaced chunk and every page
//!   after it (bounds of the chunks kept before it are carried over), and
//!   deletes old pages the new plan no longer reaches;
//! - writes a PENDING state key for every new chunk, so each has a version
//!   of its own: a lease computed against the old plan (expecting no key)
//!   cannot land on a new chunk of the same number;
//! - writes the job record with its new chunk count.
//!
//! A new leader reads plan pages and state keys at one revision, so it sees
//! the old plan or the new one. A replacement too large for one transaction
//! (`TXN_OPS` operations, `PLAN_TXN_BYTES`) is refused and nothing written.

use etcd_client::{Compare, CompareOp, GetOptions, TxnOp};
use ferry_common::proto::{ChunkPlanPage, ChunkRecord, ChunkState, JobRecord};
use prost::Message;

use super::etcd::EtcdStore;
use super::etcd_layout::{plan_pages, state_only, Layout, PLAN_TXN_BYTES, TXN_OPS};
use super::StoreError;

/// A stored plan page with its key's revision.
struct StoredPage {
    key: Vec<u8>,
    page: ChunkPlanPage,
    mod_revision: i64,
}

impl EtcdStore {
    /// `StateStore::replace_unleased` for etcd.
    pub(super) async fn resplit(
        &self,
        job: &JobRecord,
        from: u32,
        expected: &[u64],
        chunks: &[ChunkRecord],
    ) -> Result<Vec<u64>, StoreError> {
        let id = job.job_id.as_str();
        if self.layout(id) != Layout::Paged {
            return Err(StoreError::Unavailable(format!(
                "job {id} is stored in format 2: its plan is not re-split"
            )));
        }
        let pages = self.plan_pages_of(id).await?;
        let planned = pages
            .iter()
            .map(|p| p.page.first + p.page.bounds.len() as u32 - 1)
            .max()
            .unwrap_or(0);
        if from == 0 || planned + 1 < from || (planned + 1 - from) as usize != expected.len() {
            return Err(StoreError::Conflict(format!(
                "job {id} has {planned} planned chunks, not {} from chunk {from}",
                expected.len()
            )));
        }
        // the page holding `from` is rewritten with the chunks it keeps
        let first = pages
            .iter()
            .map(|p| p.page.first)
            .filter(|f| *f <= from)
            .max()
            .unwrap_or(from);
        let mut records: Vec<ChunkRecord> = Vec::new();
        if let Some(p) = pages.iter().find(|p| p.page.first == first) {
            for (n, b) in (first..from).zip(&p.page.bounds) {
                records.push(ChunkRecord {
                    chunk_no: n,
                    bounds: Some(b.clone()),
                    ..Default::default()
                });
            }
        }
        records.extend(chunks.iter().cloned());
        let new_pages = plan_pages(&records);
        // each replaced chunk unchanged since the scheduler read it (a
        // planned one has no key: version 0)
        let mut compares: Vec<Compare> = (from..)
            .zip(expected)
            .map(|(n, v)| {
                let key = self.keys.chunk(Layout::Paged, id, n);
                Compare::mod_revision(key, CompareOp::Equal, *v as i64)
            })
            .collect();
        let mut ops = Vec::new();
        let mut bytes = 0;
        let new_keys: Vec<String> = new_pages
            .iter()
            .map(|(f, _)| self.keys.plan(id, *f))
            .collect();
        for p in pages.iter().filter(|p| p.page.first >= first) {
            compares.push(Compare::mod_revision(
                p.key.clone(),
                CompareOp::Equal,
                p.mod_revision,
            ));
            if !new_keys.iter().any(|k| k.as_bytes() == p.key.as_slice()) {
                ops.push(TxnOp::delete(p.key.clone(), None));
            }
        }
        for (key, (_, page)) in new_keys.into_iter().zip(new_pages) {
            bytes += page.len();
            ops.push(TxnOp::put(key, page, None));
        }
        for c in chunks {
            let pending = ChunkRecord {
                state: ChunkState::Pending as i32,
                ..c.clone()
            };
            ops.push(TxnOp::put(
                self.keys.chunk(Layout::Paged, id, c.chunk_no),
                state_only(&pending),
                None,
            ));
        }
        ops.push(TxnOp::put(
            self.keys.job(Layout::Paged, id),
            job.encode_to_vec(),
            None,
        ));
        if ops.len() > TXN_OPS || compares.len() > TXN_OPS || bytes > PLAN_TXN_BYTES {
            return Err(StoreError::Unavailable(format!(
                "job {id}: re-splitting {} chunks into {} takes {} etcd operations and {bytes} bytes, more than one transaction may carry",
                expected.len(),
                chunks.len(),
                ops.len()
            )));
        }
        let rev = self.guarded(compares, ops, "re-split plan").await?;
        Ok(vec![rev as u64; chunks.len()])
    }

    /// The job's plan pages as stored now.
    async fn plan_pages_of(&self, id: &str) -> Result<Vec<StoredPage>, StoreError> {
        let resp = self
            .get(
                self.keys.plans(id).into_bytes(),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        resp.kvs()
            .iter()
            .map(|kv| {
                let page = ChunkPlanPage::decode(kv.value()).map_err(|e| StoreError::Corrupt {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    reason: e.to_string(),
                })?;
                Ok(StoredPage {
                    key: kv.key().to_vec(),
                    page,
                    mod_revision: kv.mod_revision(),
                })
            })
            .collect()
    }
}
