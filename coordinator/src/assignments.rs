//! Watches the `assign/…` keys in etcd: when the etcd lease of a worker that
//! an earlier version registered expires, its assignments vanish, and the
//! leader requeues those chunks (this version writes assignments under no
//! lease: see `store/etcd_workers.rs`). A watch cancelled by compaction (or
//! broken) means: re-list, then watch again.

use ferry_common::timing::ASSIGNMENT_WATCH_RETRY;
use std::collections::HashSet;
use std::sync::Arc;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio_util::sync::CancellationToken;

use crate::scheduler::Scheduler;

/// Parses `…/assign/<job>/<n>` into its job and chunk.
fn parse_key(key: &[u8]) -> Option<(String, u32)> {
    let key = std::str::from_utf8(key).ok()?;
    let mut parts = key.rsplit('/');
    let n = parts.next()?.parse().ok()?;
    let job = parts.next()?.to_string();
    Some((job, n))
}

/// Parses an assignment value `worker attempt`.
fn parse_value(v: &[u8]) -> Option<(String, u32)> {
    let v = std::str::from_utf8(v).ok()?;
    let (w, a) = v.split_once(' ')?;
    Some((w.to_string(), a.parse().ok()?))
}

async fn relist(client: &Client, prefix: &str) -> Option<(HashSet<(String, u32)>, i64)> {
    let resp = client
        .clone()
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .ok()?;
    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
    Some((
        resp.kvs()
            .iter()
            .filter_map(|kv| parse_key(kv.key()))
            .collect(),
        rev,
    ))
}

/// Runs until `stop`: requeues chunks whose assignment was deleted by an expired lease.
pub async fn watch(
    client: Client,
    prefix: String,
    scheduler: Arc<Scheduler>,
    stop: CancellationToken,
) {
    let prefix = format!("{}/assign/", prefix.trim_end_matches('/'));
    while !stop.is_cancelled() {
        let Some((live, rev)) = relist(&client, &prefix).await else {
            tokio::time::sleep(ASSIGNMENT_WATCH_RETRY).await;
            continue;
        };
        scheduler.reconcile_assignments(&live).await;
        let opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(rev + 1);
        let mut stream = match client.clone().watch(prefix.clone(), Some(opts)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch assignments; retrying");
                tokio::time::sleep(ASSIGNMENT_WATCH_RETRY).await;
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => return,
                m = stream.message() => m,
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) | Err(_) => break,
            };
            if resp.canceled() || resp.compact_revision() > 0 {
                tracing::info!(
                    compact_revision = resp.compact_revision(),
                    "assignment watch cancelled (compaction): re-listing"
                );
                break;
            }
            for ev in resp.events() {
                if ev.event_type() != EventType::Delete {
                    continue;
                }
                let Some(kv) = ev.kv() else { continue };
                let Some((job, n)) = parse_key(kv.key()) else {
                    continue;
                };
                let Some((worker, attempt)) = ev.prev_kv().and_then(|p| parse_value(p.value()))
                else {
                    continue;
                };
                scheduler.assignment_lost(&job, n, &worker, attempt).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_values() {
        assert_eq!(
            parse_key(b"/ferry/assign/j1/0000000007"),
            Some(("j1".into(), 7))
        );
        assert_eq!(parse_value(b"w1 3"), Some(("w1".into(), 3)));
        assert_eq!(parse_value(b"w1"), None);
    }
}
