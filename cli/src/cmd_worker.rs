//! `ferry worker`: leases chunks from the coordinator and copies them.

use std::time::Duration;

use ferry_common::connections::ConnectionRegistry;
use ferry_common::timing::{DEFAULT_DRAIN_TIMEOUT, DEFAULT_POOL_IDLE_TIMEOUT};
use ferry_worker::drain::DrainConfig;
use ferry_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

use crate::duration::parse_duration;
use crate::security_args::ClientTlsArgs;
use crate::telemetry::TelemetryArgs;
use crate::EXIT_BAD_INPUT;

/// Flags of `ferry worker`.
#[derive(clap::Args)]
pub struct Args {
    /// Coordinator addresses, comma-separated; the worker follows the leader.
    #[arg(
        long,
        env = "FERRY_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    coordinator: String,
    /// Chunks copied at once.
    #[arg(long, env = "FERRY_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// On SIGTERM, how long chunks in flight may run on before they are rolled
    /// back and handed back (released, not counted as a retry); e.g. 50s. Keep it
    /// about 10s under Kubernetes' terminationGracePeriodSeconds. Default 20s.
    #[arg(long, env = "FERRY_DRAIN_TIMEOUT", value_parser = parse_duration)]
    drain_timeout: Option<Duration>,
    /// How long an idle pooled database connection stays open before it is
    /// closed; lowered to the coordinator's FERRY_POOL_IDLE_TIMEOUT when that
    /// is shorter (its connection budget counts a pooled connection that long). Default 3s.
    #[arg(long, env = "FERRY_POOL_IDLE_TIMEOUT", value_parser = parse_duration)]
    pool_idle_timeout: Option<Duration>,
}

/// Runs the worker until SIGINT/SIGTERM, then drains: no new chunks, chunks in
/// flight finish within the drain timeout or are handed back; exits 0.
/// A second signal hands them back at once; a third exits at once (130).
pub async fn run(args: Args) -> i32 {
    let telemetry = match crate::telemetry::start(&args.telemetry, "ferry-worker").await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let hostname = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let connections = match ConnectionRegistry::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let drain = DrainConfig {
        timeout: args.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        release_now: CancellationToken::new(),
    };
    let cfg = WorkerConfig {
        coordinator: args.coordinator,
        concurrency: args.concurrency,
        hostname,
        connections,
        tls: args.tls.files(),
        drain: drain.clone(),
        pool_idle_timeout: args.pool_idle_timeout.unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT),
    };
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        tracing::info!(
            drain_timeout_s = drain.timeout.as_secs_f64(),
            "signal received: leasing no more chunks; finishing chunks in flight (send again to hand them back at once)"
        );
        trigger.cancel();
        crate::shutdown_signal().await;
        tracing::warn!(
            "second signal: handing chunks in flight back now (send again to exit at once)"
        );
        drain.release_now.cancel();
        crate::shutdown_signal().await;
        std::process::exit(130);
    });
    let code = match ferry_worker::run(cfg, stop).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_BAD_INPUT
        }
    };
    telemetry.shutdown().await;
    code
}
