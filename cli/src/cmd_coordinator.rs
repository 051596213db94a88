//! `ferry coordinator`: serves the job API and the worker protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_common::config::{parse_duration, JobDefaults};
use ferry_common::connections::ConnectionRegistry;
use ferry_common::ledger::DEFAULT_LEDGER_SCHEMA;
use ferry_common::timing::{Timings, MIN_JOB_RETENTION, RESIGN_TIMEOUT};
use ferry_coordinator::etcd_security::EtcdSecurity;
use ferry_coordinator::history::{History, HistoryConfig};
use ferry_coordinator::leader::{self, EtcdOptions};
use ferry_coordinator::scheduler::{JobLifecycle, Scheduler, SchedulerConfig};
use ferry_coordinator::security::Security;
use ferry_coordinator::server::{self, Secured};
use ferry_coordinator::store::{MemoryStore, DEFAULT_MAX_TXN_OPS};
use tokio_util::sync::CancellationToken;

use crate::security_args::ServerSecurityArgs;
use crate::telemetry::TelemetryArgs;
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
    /// The etcd servers' --max-txn-ops: chunk writes that arrive together share
    /// transactions of up to this many operations. Never above the servers'
    /// setting (etcd refuses bigger transactions; their writes then go one by one).
    #[arg(long, env = "FERRY_ETCD_MAX_TXN_OPS", default_value_t = DEFAULT_MAX_TXN_OPS as u32,
          value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    etcd_max_txn_ops: u32,
    /// Address other processes reach this coordinator at (default: http://LISTEN, https:// with TLS).
    #[arg(long, env = "FERRY_ADVERTISE")]
    advertise: Option<String>,
    /// Connection whose database holds every job's history row (default: each job's target).
    #[arg(long, env = "FERRY_HISTORY_CONN")]
    history_conn: Option<String>,
    /// How long a finished job stays in memory and etcd before only its history row
    /// remains (0 keeps them; at least 30s otherwise).
    #[arg(long, env = "FERRY_JOB_RETENTION", default_value = "24h", value_parser = parse_retention)]
    job_retention: Retention,
    /// How long a job's ledger rows stay in its target after its last chunk
    /// committed, once the leader no longer holds the job; the leader removes
    /// older rows hourly (0 keeps them; `ferry gc` does it on demand).
    #[arg(long, env = "FERRY_LEDGER_RETENTION", default_value = "30d", value_parser = parse_ledger_retention)]
    ledger_retention: Retention,
    #[command(flatten)]
    security: ServerSecurityArgs,
    /// CA (PEM) of etcd's server certificate; etcd endpoints are then https://.
    #[arg(long, env = "FERRY_ETCD_CA")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth.
    #[arg(long, env = "FERRY_ETCD_CERT")]
    etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long, env = "FERRY_ETCD_KEY")]
    etcd_key: Option<PathBuf>,
    /// etcd user; its password is read from FERRY_ETCD_PASSWORD_FILE.
    #[arg(long, env = "FERRY_ETCD_USER")]
    etcd_user: Option<String>,
    /// File holding the etcd user's password.
    #[arg(long, env = "FERRY_ETCD_PASSWORD_FILE", hide = true)]
    etcd_password_file: Option<PathBuf>,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// A job retention: None keeps finished jobs forever.
#[derive(Debug, Clone, Copy)]
pub struct Retention(pub Option<Duration>);

/// Parses `FERRY_JOB_RETENTION`: 0, or a duration of at least `MIN_JOB_RETENTION`.
fn parse_retention(value: &str) -> Result<Retention, String> {
    let d = parse_duration("FERRY_JOB_RETENTION", value).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Ok(Retention(None));
    }
    if d < MIN_JOB_RETENTION {
        return Err(format!(
            "FERRY_JOB_RETENTION={value} is shorter than {}s: per-job metrics must outlive two scrape intervals; use 0 to keep finished jobs",
            MIN_JOB_RETENTION.as_secs()
        ));
    }
    Ok(Retention(Some(d)))
}

/// Parses `FERRY_LEDGER_RETENTION`: 0 (keep), or a duration.
fn parse_ledger_retention(value: &str) -> Result<Retention, String> {
    let d = parse_duration("FERRY_LEDGER_RETENTION", value).map_err(|e| e.to_string())?;
    Ok(Retention((!d.is_zero()).then_some(d)))
}

/// Builds the scheduler settings from flags and environment, or explains what is wrong.
pub fn scheduler_config(
    connections: ConnectionRegistry,
    lease_ttl: Duration,
    ledger_schema: String,
) -> Result<SchedulerConfig, String> {
    let defaults = JobDefaults::from_env().map_err(|e| e.to_string())?;
    let timings = Timings::new(lease_ttl).map_err(|e| e.to_string())?;
    let budget = crate::budget_config::connection_budget(&connections)?;
    Ok(SchedulerConfig {
        defaults,
        connections,
        timings,
        ledger_schema,
        lifecycle: JobLifecycle {
            budget: std::sync::Arc::new(budget),
            ..JobLifecycle::default()
        },
    })
}

/// Runs the coordinator until SIGINT/SIGTERM.
pub async fn run(args: Args) -> i32 {
    let telemetry = match crate::telemetry::start(&args.telemetry, "ferry-coordinator").await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let code = serve(args).await;
    telemetry.shutdown().await;
    code
}

async fn serve(args: Args) -> i32 {
    let connections = match ConnectionRegistry::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let lease_ttl = Duration::from_millis(args.lease_ttl_ms);
    let mut config =
        match scheduler_config(connections.clone(), lease_ttl, args.ledger_schema.clone()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_BAD_INPUT;
            }
        };
    let security = match Security::load(&args.security.options()) {
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
    let health_listener = match args.security.health_listen {
        Some(a) => match server::bind(a).await {
            Ok((l, bound)) => {
                tracing::info!(addr = %bound, "serving plaintext gRPC health for probes");
                Some(l)
            }
            Err(e) => {
                eprintln!("error: --health-listen: {e}");
                return EXIT_BAD_INPUT;
            }
        },
        None => None,
    };
    tracing::info!(security = %security.describe(), "coordinator security");
    let scheme = if security.tls().is_some() {
        "https"
    } else {
        "http"
    };
    let history = HistoryConfig {
        connection: args.history_conn.clone().filter(|c| !c.trim().is_empty()),
        schema: args.ledger_schema.clone(),
        coordinator: args
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}")),
    };
    config.lifecycle = match History::new(history, connections.clone()) {
        Ok(h) => {
            h.use_budget(std::sync::Arc::clone(&config.lifecycle.budget));
            JobLifecycle {
                history: Some(h),
                retention: args.job_retention.0,
                ledger_retention: args.ledger_retention.0,
                budget: std::sync::Arc::clone(&config.lifecycle.budget),
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let (gate, health) = server::gate().await;
    ferry_coordinator::metrics::register_job_table(Arc::clone(&gate));
    match ferry_coordinator::lineage::LineageConfig::from_env() {
        Ok(Some(lineage)) => {
            tracing::info!(url = %lineage.url(), "sending openlineage events");
            ferry_coordinator::lineage::spawn(Arc::clone(&gate), lineage);
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    }
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
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        tracing::info!(%addr, %advertise, etcd = ?args.etcd, prefix = %args.etcd_prefix, connections = ?connections.names(), "coordinator campaigning for leadership");
        let opts = EtcdOptions {
            endpoints: args.etcd.clone(),
            prefix: args.etcd_prefix.clone(),
            advertise,
            security: EtcdSecurity {
                ca: args.etcd_ca.clone(),
                cert: args.etcd_cert.clone(),
                key: args.etcd_key.clone(),
                user: args.etcd_user.clone(),
                password_file: args.etcd_password_file.clone(),
            },
            max_txn_ops: args.etcd_max_txn_ops as usize,
        };
        tokio::spawn(leader::run(Arc::clone(&gate), config, opts, stop.clone()))
    };
    let server_stop = stop.clone();
    let mut leading = leading;
    let mut term_ended = false;
    let served = tokio::select! {
        r = server::serve_secured(listener, gate, health, Secured { security, health_listener }, async move { server_stop.cancelled().await }) => r.map_err(|e| e.to_string()),
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
