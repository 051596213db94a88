//! The coordinator's life with etcd: campaign, take over (rebuild from etcd),
//! serve while leading, step down and campaign again when leadership or the
//! store's trust is lost.

use std::sync::Arc;
use std::time::Instant;

use etcd_client::{Client, ConnectOptions};
use ferry_common::timing::{ELECTION_RETRY, ETCD_KEEPALIVE, ETCD_REQUEST_TIMEOUT, RESIGN_TIMEOUT};
use tokio_util::sync::CancellationToken;

use crate::assignments;
use crate::election::{campaign, current_leader};
use crate::etcd_security::EtcdSecurity;
use crate::gate::Gate;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::store::{map_etcd_error, EtcdStore, StateStore, StoreError, Tripwire};

/// Where etcd is and how this replica is reached.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// etcd client endpoints.
    pub endpoints: Vec<String>,
    /// Key prefix.
    pub prefix: String,
    /// The address workers and clients reach this coordinator at.
    pub advertise: String,
    /// TLS and user credentials for etcd.
    pub security: EtcdSecurity,
    /// The etcd servers' `--max-txn-ops` (etcd's default: 128).
    pub max_txn_ops: usize,
}

/// Connects to etcd with Ferry's request deadline.
pub async fn connect_etcd(endpoints: &[String]) -> Result<Client, StoreError> {
    connect_etcd_secured(endpoints, &EtcdSecurity::default()).await
}

/// Like `connect_etcd`, with TLS and user credentials.
pub async fn connect_etcd_secured(
    endpoints: &[String],
    security: &EtcdSecurity,
) -> Result<Client, StoreError> {
    let opts = ConnectOptions::new()
        .with_timeout(ETCD_REQUEST_TIMEOUT)
        .with_connect_timeout(ETCD_REQUEST_TIMEOUT)
        .with_keep_alive(ETCD_KEEPALIVE, ETCD_REQUEST_TIMEOUT);
    let opts = security
        .apply(endpoints, opts)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Client::connect(endpoints, Some(opts))
        .await
        .map_err(map_etcd_error)
}

/// Campaigns and leads until `stop`; each term rebuilds the scheduler from etcd.
pub async fn run(
    gate: Arc<Gate>,
    config: SchedulerConfig,
    opts: EtcdOptions,
    stop: CancellationToken,
) -> Result<(), StoreError> {
    let client = connect_etcd_secured(&opts.endpoints, &opts.security).await?;
    while !stop.is_cancelled() {
        gate.follow(current_leader(&client, &opts.prefix).await)
            .await;
        let campaign_started = Instant::now();
        let leadership = match campaign(&client, &opts.prefix, &opts.advertise, &stop, |l| {
            gate.set_leader(l)
        })
        .await
        {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "election failed; retrying");
                tokio::time::sleep(ELECTION_RETRY).await;
                continue;
            }
        };
        let took_over = Instant::now();
        let tripped = CancellationToken::new();
        let store = Tripwire::new(
            EtcdStore::with_max_txn_ops(
                client.clone(),
                &opts.prefix,
                Some(leadership.fence.clone()),
                opts.max_txn_ops,
            ),
            tripped.clone(),
        );
        let snapshot = match store.load().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load state after winning the election; stepping down");
                leadership.lost.cancel();
                let _ = client.clone().lease_revoke(leadership.lease_id).await;
                continue;
            }
        };
        let store: Arc<dyn StateStore> = Arc::new(store);
        let scheduler = Scheduler::new(store, config.clone());
        let summary = scheduler.recover(snapshot).await;
        let ticker = scheduler.spawn_ticker();
        let term = stop.child_token();
        tokio::spawn(assignments::watch(
            client.clone(),
            opts.prefix.clone(),
            Arc::clone(&scheduler),
            term.clone(),
        ));
        gate.lead(Arc::clone(&scheduler)).await;
        tracing::info!(
            advertise = %opts.advertise,
            jobs = summary.jobs,
            running = summary.running,
            in_flight = summary.in_flight,
            waited_s = format!("{:.1}", (took_over - campaign_started).as_secs_f64()),
            load_ms = took_over.elapsed().as_millis() as u64,
            "became the leader coordinator; state rebuilt from etcd"
        );
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = leadership.lost.cancelled() => tracing::error!("lost leadership: stepping down"),
            _ = tripped.cancelled() => tracing::error!("state store refused a write: stepping down to rebuild from etcd"),
        }
        // the term is over, whatever ended it: a write of its tasks still in
        // flight that fails now is no news (and must not log a step-down
        // after the next term has begun)
        tripped.cancel();
        ticker.abort();
        term.cancel();
        scheduler.shutdown();
        gate.follow(None).await;
        leadership.lost.cancel();
        resign(&client, leadership.lease_id, stop.is_cancelled()).await;
    }
    Ok(())
}

/// Ends a term: revokes the election lease, which deletes the leader key, so
/// a standby leads at once instead of waiting for the lease to expire.
/// `stopping` (the process is shutting down) says so in the log.
async fn resign(client: &Client, lease_id: i64, stopping: bool) {
    let started = Instant::now();
    let revoked = tokio::time::timeout(RESIGN_TIMEOUT, client.clone().lease_revoke(lease_id)).await;
    match revoked {
        Ok(Ok(_)) if stopping => tracing::info!(
            revoke_ms = started.elapsed().as_millis() as u64,
            "resigned leadership: election lease revoked, a standby may lead at once"
        ),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot revoke the election lease: a standby leads once it expires")
        }
        Err(_) => {
            tracing::warn!("election lease revocation timed out: a standby leads once it expires")
        }
    }
}
