//! `ferry worker`: leases chunks from the coordinator and copies them.

use ferry_common::connections::ConnectionRegistry;
use ferry_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

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
}

/// Runs the worker until SIGINT/SIGTERM, then lets chunks in flight finish.
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
    let cfg = WorkerConfig {
        coordinator: args.coordinator,
        concurrency: args.concurrency,
        hostname,
        connections,
        tls: args.tls.files(),
    };
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        tracing::info!("signal received: finishing chunks in flight (send again to exit at once)");
        trigger.cancel();
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
