//! `ferry coordinator`: serves the job API and the worker protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_common::config::JobDefaults;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::ledger::DEFAULT_LEDGER_SCHEMA;
use ferry_common::timing::Timings;
use ferry_coordinator::scheduler::{Scheduler, SchedulerConfig};
use ferry_coordinator::server;
use ferry_coordinator::store::{MemoryStore, StateStore};

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
}

/// Builds a scheduler from flags and environment, or explains what is wrong.
pub fn build_scheduler(
    store: Arc<dyn StateStore>,
    connections: ConnectionRegistry,
    lease_ttl: Duration,
    ledger_schema: String,
) -> Result<Arc<Scheduler>, String> {
    let defaults = JobDefaults::from_env().map_err(|e| e.to_string())?;
    let timings = Timings::new(lease_ttl).map_err(|e| e.to_string())?;
    Ok(Scheduler::new(store, SchedulerConfig { defaults, connections, timings, ledger_schema }))
}

/// Runs the coordinator until SIGINT/SIGTERM.
pub async fn run(args: Args) -> i32 {
    ferry_common::telemetry::init_logging();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let connections = ConnectionRegistry::from_env();
    let scheduler = match build_scheduler(
        Arc::clone(&store),
        connections.clone(),
        Duration::from_millis(args.lease_ttl_ms),
        args.ledger_schema,
    ) {
        Ok(s) => s,
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
    tracing::info!(
        %addr,
        store = %store.describe(),
        connections = ?connections.names(),
        "coordinator serving; this is a single, non-failover coordinator: its jobs live in memory and are lost if it stops"
    );
    let _ticker = scheduler.spawn_ticker();
    match server::serve(listener, scheduler, crate::shutdown_signal()).await {
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
