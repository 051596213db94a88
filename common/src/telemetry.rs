//! Logging set-up shared by every `ferry` process.

use tracing_subscriber::EnvFilter;

/// Installs the log subscriber: `FERRY_LOG` (or `RUST_LOG`) filters, `info` by
/// default; lines read `2026-11-25T07:00:00Z  INFO message key=value`.
pub fn init_logging() {
    let filter = std::env::var("FERRY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,h2=warn,tower=warn,hyper=warn,tokio_postgres=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
