//! `ferry local`: a coordinator and N workers in one process, talking gRPC over
//! loopback (the same code paths as a cluster), copying one job.

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_common::client::Coordinators;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::ledger::DEFAULT_LEDGER_SCHEMA;
use ferry_common::proto::{JobState, SubmitJobRequest};
use ferry_common::timing::{
    DEFAULT_WORKER_LEASE_TTL, LOCAL_CANCEL_GRACE, LOCAL_HISTORY_FLUSH, LOCAL_SERVER_STOP,
    LOCAL_WORKER_STOP, RPC_TIMEOUT,
};
use ferry_coordinator::history::{History, HistoryConfig};
use ferry_coordinator::scheduler::Scheduler;
use ferry_coordinator::server;
use ferry_coordinator::store::MemoryStore;
use ferry_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

use crate::client::describe_status;
use crate::cmd_coordinator::scheduler_config;
use crate::jobspec::Tuning;
use crate::telemetry::TelemetryArgs;
use crate::watch::{follow, summarize};
use crate::{EXIT_BAD_INPUT, EXIT_JOB_FAILED};

/// Flags of `ferry local`.
#[derive(clap::Args)]
pub struct Args {
    /// Source database URL (postgres://…).
    #[arg(long, env = "FERRY_SOURCE_URL")]
    source: String,
    /// Target database URL.
    #[arg(long, env = "FERRY_TARGET_URL")]
    target: String,
    /// SQL query whose rows are copied.
    #[arg(long)]
    query: String,
    /// Target table, schema.table.
    #[arg(long)]
    table: String,
    /// Workers (chunks in flight at once).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    workers: u32,
    #[command(flatten)]
    tuning: Tuning,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// Runs one job locally and prints the guide's lines and a summary.
pub async fn run(args: Args) -> i32 {
    if std::env::var_os("FERRY_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var(
            "FERRY_LOG",
            "info,ferry_worker=warn,h2=warn,tower=warn,hyper=warn",
        );
    }
    let telemetry = match crate::telemetry::start(&args.telemetry, "ferry-local").await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let code = run_local(args).await;
    telemetry.shutdown().await;
    code
}

async fn run_local(args: Args) -> i32 {
    let connections = ConnectionRegistry::from_pairs([
        ("source".to_string(), args.source.clone()),
        ("target".to_string(), args.target.clone()),
    ]);
    let history = HistoryConfig {
        connection: None,
        schema: DEFAULT_LEDGER_SCHEMA.to_string(),
        coordinator: "ferry local".to_string(),
    };
    let scheduler = match scheduler_config(
        connections.clone(),
        DEFAULT_WORKER_LEASE_TTL,
        DEFAULT_LEDGER_SCHEMA.to_string(),
    ) {
        Ok(mut c) => {
            c.lifecycle.history = History::new(history, connections.clone()).ok();
            if let Some(h) = &c.lifecycle.history {
                h.use_budget(Arc::clone(&c.lifecycle.budget));
            }
            Scheduler::new(Arc::new(MemoryStore::new()), c)
        }
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let (listener, addr) = match server::bind(loopback).await {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let _ticker = scheduler.spawn_ticker();
    let (gate, health) = server::gate().await;
    ferry_coordinator::metrics::register_job_table(Arc::clone(&gate));
    gate.lead(Arc::clone(&scheduler)).await;
    // workers stop first and the server after them, so their last
    // heartbeats and reports still reach it
    let stop = CancellationToken::new();
    let server_stop = CancellationToken::new();
    let server_stopped = server_stop.clone();
    let server = tokio::spawn(server::serve(listener, gate, health, async move {
        server_stopped.cancelled().await
    }));
    let url = format!("http://{addr}");
    let mut workers = Vec::new();
    for i in 0..args.workers {
        let cfg = WorkerConfig {
            coordinator: url.clone(),
            concurrency: 1,
            hostname: format!("local-{i}"),
            connections: connections.clone(),
            tls: Default::default(),
            drain: ferry_worker::drain::DrainConfig::default(),
            pool_idle_timeout: ferry_common::timing::DEFAULT_POOL_IDLE_TIMEOUT,
        };
        workers.push(tokio::spawn(ferry_worker::run(cfg, stop.clone())));
    }
    let code = submit_and_follow(&url, &args).await;
    // the job has ended and nothing more will be leased: the workers' long
    // polls end now, so they stop at once
    scheduler.close_long_polls();
    stop.cancel();
    // the history row is written while the workers leave
    let workers_stopped = async {
        for w in workers {
            let _ = tokio::time::timeout(LOCAL_WORKER_STOP, w).await;
        }
    };
    let (flushed, ()) = tokio::join!(
        scheduler.flush_history(LOCAL_HISTORY_FLUSH),
        workers_stopped
    );
    if !flushed {
        tracing::warn!("the job's history row was not written before exit");
    }
    server_stop.cancel();
    let _ = tokio::time::timeout(LOCAL_SERVER_STOP, server).await;
    code
}

async fn submit_and_follow(url: &str, args: &Args) -> i32 {
    let c = match Coordinators::new(url, Some(RPC_TIMEOUT)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let spec = args.tuning.spec(
        "source",
        &args.query,
        "target",
        &args.table,
        Some(args.workers),
    );
    let resp = match c
        .jobs()
        .submit_job(SubmitJobRequest {
            request_id: String::new(),
            spec: Some(spec),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => {
            eprintln!("error: {}", describe_status(&c, &s));
            return EXIT_BAD_INPUT;
        }
    };
    let interrupted = crate::shutdown_signal();
    tokio::pin!(interrupted);
    let job = tokio::select! {
        r = follow(&c, &resp.job_id, false) => r,
        _ = &mut interrupted => {
            eprintln!("interrupted: cancelling job {}", resp.job_id);
            let _ = c.jobs().cancel_job(ferry_common::proto::CancelJobRequest { job_id: resp.job_id.clone() }).await;
            tokio::time::sleep(LOCAL_CANCEL_GRACE).await;
            return EXIT_JOB_FAILED;
        }
    };
    match job {
        Ok(job) => {
            summarize(&job);
            println!("{}", job.job_id);
            if JobState::try_from(job.state) == Ok(JobState::Succeeded) {
                0
            } else {
                EXIT_JOB_FAILED
            }
        }
        Err(s) => {
            eprintln!("error: {}", describe_status(&c, &s));
            EXIT_JOB_FAILED
        }
    }
}
