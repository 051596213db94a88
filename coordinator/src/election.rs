//! Leader election over etcd: replicas race to create the leader key under
//! their own lease; the winner acts only after its first successful renewal
//! and steps down as soon as a renewal is late.

use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use ferry_common::timing::{ELECTION_KEEPALIVE, ELECTION_POLL, ELECTION_STEP_DOWN, ELECTION_TTL};
use tokio_util::sync::CancellationToken;

use crate::store::{map_etcd_error, with_retry, LeaderFence, StoreError};

/// A won election: the fence to compare in every write, and a token that is
/// cancelled when leadership is lost.
pub struct Leadership {
    /// The election key and its create revision.
    pub fence: LeaderFence,
    /// The election lease.
    pub lease_id: i64,
    /// Cancelled when a renewal fails or is late.
    pub lost: CancellationToken,
}

/// The leader key under `prefix`.
pub fn leader_key(prefix: &str) -> String {
    format!("{}/leader", prefix.trim_end_matches('/'))
}

/// The address the current leader advertises, if any.
pub async fn current_leader(client: &Client, prefix: &str) -> Option<String> {
    let resp = client.clone().get(leader_key(prefix), None).await.ok()?;
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// Campaigns until this replica leads (or `stop` fires); `on_follow` is told
/// the leader's address while waiting.
pub async fn campaign(
    client: &Client,
    prefix: &str,
    advertise: &str,
    stop: &CancellationToken,
    mut on_follow: impl FnMut(Option<String>),
) -> Result<Option<Leadership>, StoreError> {
    let key = leader_key(prefix);
    let grant = client
        .clone()
        .lease_grant(ELECTION_TTL.as_secs() as i64, None)
        .await
        .map_err(map_etcd_error)?;
    let lease_id = grant.id();
    let (mut keeper, mut stream) = client
        .clone()
        .lease_keep_alive(lease_id)
        .await
        .map_err(map_etcd_error)?;
    let mut last_renewal = Instant::now();
    let mut last_leader: Option<String> = None;
    loop {
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                key.clone(),
                advertise,
                Some(PutOptions::new().with_lease(lease_id)),
            )])
            .or_else(vec![TxnOp::get(key.clone(), None)]);
        let resp = with_retry(|| {
            let mut c = client.clone();
            let t = txn.clone();
            async move { c.txn(t).await }
        })
        .await
        .map_err(map_etcd_error)?;
        if resp.succeeded() {
            let create_revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            let fence = LeaderFence {
                key: key.clone(),
                create_revision,
            };
            // act only after the first successful renewal
            keeper.keep_alive().await.map_err(map_etcd_error)?;
            match stream.message().await.map_err(map_etcd_error)? {
                Some(r) if r.ttl() > 0 => {}
                _ => return Err(StoreError::NotLeader),
            }
            let lost = CancellationToken::new();
            tokio::spawn(keep_leading(
                client.clone(),
                lease_id,
                (keeper, stream),
                lost.clone(),
                stop.clone(),
            ));
            return Ok(Some(Leadership {
                fence,
                lease_id,
                lost,
            }));
        }
        let leader = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
            _ => None,
        });
        if leader != last_leader {
            tracing::info!(
                leader = leader.as_deref().unwrap_or("?"),
                "following the leader coordinator"
            );
            on_follow(leader.clone());
            last_leader = leader;
        }
        if last_renewal.elapsed() >= ELECTION_KEEPALIVE {
            // keep our campaign lease alive while we wait
            keeper.keep_alive().await.map_err(map_etcd_error)?;
            match stream.message().await.map_err(map_etcd_error)? {
                Some(r) if r.ttl() > 0 => last_renewal = Instant::now(),
                _ => return Err(StoreError::Unavailable("campaign lease expired".into())),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = client.clone().lease_revoke(lease_id).await;
                return Ok(None);
            }
            _ = tokio::time::sleep(ELECTION_POLL) => {}
        }
    }
}

/// Renews the election lease every keepalive interval, reopening the
/// keepalive stream (perhaps on another etcd member) when it breaks; cancels
/// `lost` when the lease is gone or the last success is older than the
/// step-down time.
async fn keep_leading(
    client: Client,
    lease_id: i64,
    first: (etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream),
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let mut pair = Some(first);
    let mut last_ok = Instant::now();
    let mut wait = ELECTION_KEEPALIVE;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let budget = ELECTION_STEP_DOWN
            .saturating_sub(last_ok.elapsed())
            .max(Duration::from_millis(1));
        let renewed = async {
            if pair.is_none() {
                pair = Some(client.clone().lease_keep_alive(lease_id).await.ok()?);
            }
            let (keeper, stream) = pair.as_mut()?;
            keeper.keep_alive().await.ok()?;
            let r = stream.message().await.ok()??;
            Some(r.ttl())
        };
        // a term that ended meanwhile (lost elsewhere, or the process
        // stops) is over: a late answer must not announce a second step-down
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            _ = lost.cancelled() => return,
            r = tokio::time::timeout(budget, renewed) => r,
        };
        match outcome {
            Ok(Some(ttl)) if ttl > 0 => {
                last_ok = Instant::now();
                wait = ELECTION_KEEPALIVE;
            }
            Ok(Some(_)) => {
                tracing::error!("election lease expired: stepping down");
                lost.cancel();
                return;
            }
            _ => {
                pair = None;
                wait = ELECTION_POLL;
                if last_ok.elapsed() >= ELECTION_STEP_DOWN {
                    tracing::error!(
                        since_ms = last_ok.elapsed().as_millis() as u64,
                        "election lease renewal is late: stepping down"
                    );
                    lost.cancel();
                    return;
                }
                tracing::warn!("election lease renewal failed; retrying on a fresh stream");
            }
        }
    }
}
