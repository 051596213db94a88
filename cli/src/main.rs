//! `ferry`: one binary for the coordinator, the worker, local mode and the client verbs.

mod budget_config;
mod client;
mod cmd_coordinator;
mod cmd_local;
mod cmd_worker;
mod completions;
mod duration;
mod gc;
mod history;
mod jobspec;
mod metrics_listener;
mod output;
mod plan;
mod security_args;
mod telemetry;
mod watch;

use clap::{CommandFactory, Parser, Subcommand};

ferry_common::use_mimalloc!();

/// Exit code when a job ended FAILED or CANCELLED.
pub const EXIT_JOB_FAILED: i32 = 1;
/// Exit code for invalid input (flags, spec, unknown job).
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code when no coordinator could be reached.
pub const EXIT_UNREACHABLE: i32 = 3;
/// Exit code when the coordinator refused the credentials or the role.
pub const EXIT_REFUSED: i32 = 4;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Parallel, exactly-once query-to-table copies between PostgreSQL, MySQL/MariaDB and SQLite databases"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator: job API, planner, scheduler.
    Coordinator(cmd_coordinator::Args),
    /// Run a worker that leases chunks from the coordinator.
    Worker(cmd_worker::Args),
    /// Run a coordinator and N workers in this process and copy one job.
    Local(cmd_local::Args),
    /// Submit a job; prints its id on the last line of stdout.
    Submit(client::SubmitArgs),
    /// Plan a job without running it or writing anything (a dry run); same flags as submit.
    Plan(plan::PlanArgs),
    /// Print a job's state (first word, in capitals) and progress.
    Status(client::JobArgs),
    /// Follow a job until it ends; exits 0 only if it succeeded.
    Watch(client::JobArgs),
    /// List jobs, newest first.
    Jobs(client::ListArgs),
    /// Cancel a job: open chunks roll back.
    Cancel(client::JobArgs),
    /// Run again the chunks of a failed or cancelled job that did not land.
    Resume(client::JobArgs),
    /// List the rows a job's target refused.
    Rejects(client::RejectsArgs),
    /// Compare each chunk's rows in source and target; exit 1 if any differ.
    Verify(client::JobArgs),
    /// Copy again the chunks that differ (delete the range and copy, in one transaction).
    Repair(client::RepairArgs),
    /// List jobs from the job history table (ferry.job_history), newest first.
    History(history::HistoryArgs),
    /// Remove the ledger rows of jobs finished longer ago than a retention.
    Gc(gc::GcArgs),
    /// Print a shell completion script: `source <(ferry completions bash)`.
    Completions(completions::Args),
}

fn main() {
    let cli = Cli::parse();
    if let Command::Completions(a) = cli.command {
        std::process::exit(completions::run(a, Cli::command()));
    }
    if matches!(cli.command, Command::Worker(_) | Command::Local(_)) {
        ferry_common::allocator::return_freed_memory_at_once();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(EXIT_BAD_INPUT);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Coordinator(a) => cmd_coordinator::run(a).await,
            Command::Worker(a) => cmd_worker::run(a).await,
            Command::Local(a) => cmd_local::run(a).await,
            Command::Submit(a) => client::submit(a).await,
            Command::Plan(a) => plan::run(a).await,
            Command::Status(a) => client::status(a).await,
            Command::Watch(a) => client::watch(a).await,
            Command::Jobs(a) => client::jobs(a).await,
            Command::Cancel(a) => client::cancel(a).await,
            Command::Resume(a) => client::resume(a).await,
            Command::Rejects(a) => client::rejects(a).await,
            Command::Verify(a) => client::verify(a).await,
            Command::Repair(a) => client::repair(a).await,
            Command::History(a) => history::run(a).await,
            Command::Gc(a) => gc::run(a).await,
            Command::Completions(_) => 0,
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
