//! `ferry coordinator`: serves the job API and the worker protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_common::config::JobDefaults;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::ledger::DEFAULT_LEDGER_SCHEMA;
use ferry_common::timing::{Timings, RESIGN_TIMEOUT};
use ferry_coordinator::leader::{self, EtcdOptions};
use ferry_coordinator::scheduler::{Scheduler, SchedulerConfig};
use ferry_coordinator::server;
use ferry_coordinator::store::MemoryStore;
use tokio_util::sync::CancellationToken;

use crate::EXIT_BAD_INPUT;

/// Flags of `ferry coordinator`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to serve gRPC on.
    #[arg(long, env = "FERRY_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Worker lease TTL in milliseconds; heartbeats run at a third of it.
    #[arg(long, env = "FERRY_LEASE_TTL_MS", default_value_t = 10_000)]
    lease_ttl_ms: u64,
    /// Schema of the ledger table created in each target.
    #[arg(long, env = "FERRY_LEDGER_SCHEMA", default_value = DEFAULT_LEDGER_SCHEMA)]
    ledger_schema: String,
    /// etcd endpoints, comma-separated; with them coordinators elect a leader and fail over.
    #[arg(long, env = "FERRY_ETCD", value_delimiter = ',')]
    etcd: Vec<String>,
    /// Key prefix in etcd.
    #[arg(long, env = "FERRY_ETCD_PREFIX", default_value = "/ferry")]
    etcd_prefix: String,
    /// Address other processes reach this coordinator at (default: http://LISTEN).
    #[arg(long, env = "FERRY_ADVERTISE")]
    advertise: Option<String>,
}

/// Builds the scheduler settings from flags and environment, or explains what is wrong.
pub fn scheduler_config(
    connections: ConnectionRegistry,
    lease_ttl: Duration,
    ledger_schema: String,
) -> Result<SchedulerConfig, String> {
    let defaults = JobDefaults::from_env().map_err(|e| e.to_string())?;
    let timings = Timings::new(lease_ttl).map_err(|e| e.to_string())?;
    Ok(SchedulerConfig {
        defaults,
        connections,
        timings,
        ledger_schema,
    })
}

/// Runs the coordinator until SIGINT/SIGTERM.
pub async fn run(args: Args) -> i32 {
    ferry_common::telemetry::init_logging();
    let connections = ConnectionRegistry::from_env();
    let lease_ttl = Duration::from_millis(args.lease_ttl_ms);
    let config = match scheduler_config(connections.clone(), lease_ttl, args.ledger_schema.clone())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let (listener, addr) = match server::bind(args.listen).await {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let (gate, health) = server::gate().await;
    let stop = CancellationToken::new();
    let leading = if args.etcd.is_empty() {
        let scheduler = Scheduler::new(Arc::new(MemoryStore::new()), config);
        let ticker = scheduler.spawn_ticker();
        gate.lead(scheduler).await;
        tracing::info!(
            %addr,
            connections = ?connections.names(),
            "coordinator serving; this is a single, non-failover coordinator: its jobs live in memory and are lost if it stops (pass --etcd for failover)"
        );
        tokio::spawn(async move {
            let _ticker = ticker;
            std::future::pending::<Result<(), ferry_coordinator::store::StoreError>>().await
        })
    } else {
        let advertise = args
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        tracing::info!(%addr, %advertise, etcd = ?args.etcd, prefix = %args.etcd_prefix, connections = ?connections.names(), "coordinator campaigning for leadership");
        let opts = EtcdOptions {
            endpoints: args.etcd.clone(),
            prefix: args.etcd_prefix.clone(),
            advertise,
        };
        tokio::spawn(leader::run(Arc::clone(&gate), config, opts, stop.clone()))
    };
    let server_stop = stop.clone();
    let mut leading = leading;
    let mut term_ended = false;
    let served = tokio::select! {
        r = server::serve(listener, gate, health, async move { server_stop.cancelled().await }) => r.map_err(|e| e.to_string()),
        r = &mut leading => {
            term_ended = true;
            match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("etcd: {e}; check --etcd")),
                Err(e) => Err(e.to_string()),
            }
        }
        _ = crate::shutdown_signal() => Ok(()),
    };
    stop.cancel();
    if !term_ended {
        // a leader resigns (revokes its election lease) before the process
        // exits, so the standby leads at once
        let budget = RESIGN_TIMEOUT + Duration::from_secs(1);
        if tokio::time::timeout(budget, &mut leading).await.is_err() {
            tracing::warn!("leadership not resigned in time: the standby leads once the election lease expires");
        }
    }
    match served {
        Ok(()) => {
            tracing::info!("coordinator stopped");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_BAD_INPUT
        }
    }
}
