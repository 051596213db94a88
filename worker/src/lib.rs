//! Ferry's stateless worker: registers with the coordinator, heartbeats,
//! leases chunks up to its concurrency and copies each one from source to
//! target in one transaction guarded by the target-side ledger.
#![warn(missing_docs)]

pub mod copy;
pub mod drain;
pub mod fault;
pub mod held;
mod metrics;
pub mod pool;
pub mod session;
pub mod typed;

use std::sync::Arc;
use std::time::Instant;

use ferry_common::client::{is_failover_status, AddressError, Coordinators};
use ferry_common::connections::ConnectionRegistry;
use ferry_common::credentials::{BearerToken, ClientSecurity};
use ferry_common::errors::{DbFailure, ErrorClass};
use ferry_common::proto::{AcquireChunkRequest, ChunkAssignment, ErrorClass as ProtoClass};
use ferry_common::telemetry::traces::from_carrier;
use ferry_common::timing::{DEFAULT_WORKER_LEASE_TTL, RPC_TIMEOUT, WORKER_LEASE_RETRY};
use ferry_common::tls::client::ClientTlsFiles;
use futures::FutureExt;
use opentelemetry::KeyValue;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use copy::{ChunkContext, Outcome};
use drain::DrainConfig;
use fault::Faults;
use held::Held;
use metrics::{connection_labels, metrics};
use pool::{IdleTimeout, Pool};
use session::Session;

/// A worker that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator address list is unusable.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A setting is invalid.
    #[error("{0}")]
    Config(String),
}

/// Settings of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Comma-separated coordinator addresses.
    pub coordinator: String,
    /// Chunks copied at once.
    pub concurrency: u32,
    /// Host name reported to the coordinator.
    pub hostname: String,
    /// Named connections.
    pub connections: ConnectionRegistry,
    /// TLS files for `https://` coordinators (`--tls-ca`, `--tls-cert`, `--tls-key`).
    pub tls: ClientTlsFiles,
    /// How the worker stops once `shutdown` fires.
    pub drain: DrainConfig,
    /// How long an idle pooled database connection stays open.
    pub pool_idle_timeout: std::time::Duration,
}

/// Runs a worker until `shutdown` fires: it then leases nothing more, lets
/// the chunks in flight finish within the drain timeout, and hands back (as
/// released) those that do not (see `drain`).
pub async fn run(cfg: WorkerConfig, shutdown: CancellationToken) -> Result<(), WorkerError> {
    if cfg.concurrency == 0 {
        return Err(WorkerError::Config(
            "--concurrency must be at least 1".into(),
        ));
    }
    let faults = Faults::from_env().map_err(WorkerError::Config)?;
    // Acquire long-polls, so its deadline must outlast the poll.
    let security = ClientSecurity {
        tls: cfg.tls.clone(),
        token: BearerToken::none(),
    };
    let coordinators = Coordinators::with_security(&cfg.coordinator, Some(RPC_TIMEOUT), &security)?;
    let held = Held::new(DEFAULT_WORKER_LEASE_TTL);
    let pool_idle = IdleTimeout::new(cfg.pool_idle_timeout);
    let session = Arc::new(Session {
        coordinators,
        worker_id: std::sync::Mutex::new(String::new()),
        session_secret: std::sync::Mutex::new(String::new()),
        hostname: cfg.hostname.clone(),
        concurrency: cfg.concurrency,
        held: Arc::clone(&held),
        pool_idle: Arc::clone(&pool_idle),
    });
    tracing::info!(coordinator = %cfg.coordinator, replicas = ?session.coordinators.replica_urls(), concurrency = cfg.concurrency, connections = ?cfg.connections.names(), "worker starting");
    if !session.register(&shutdown).await {
        return Ok(());
    }
    let heartbeat_stop = CancellationToken::new();
    let hb = tokio::spawn(Arc::clone(&session).heartbeat_loop(heartbeat_stop.clone()));
    let ctx = Arc::new(ChunkContext {
        pool: Pool::new(cfg.connections.clone(), pool_idle),
        session: Arc::clone(&session),
        faults,
        shutdown: shutdown.clone(),
    });
    let slots = Arc::new(Semaphore::new(cfg.concurrency as usize));
    metrics::init();
    metrics().slots.add(i64::from(cfg.concurrency), &[]);
    let mut tasks = JoinSet::new();
    while !shutdown.is_cancelled() {
        while let Some(done) = tasks.try_join_next() {
            log_slot_end(done);
        }
        let free = slots.available_permits() as u32;
        if free == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                done = tasks.join_next() => if let Some(done) = done { log_slot_end(done) },
            }
            continue;
        }
        let req = AcquireChunkRequest {
            worker_id: session.id(),
            slots: free,
            session_secret: session.secret(),
        };
        let mut client = session.coordinators.workers();
        // Not cut short by shutdown (the long poll ends within a second): a
        // lease granted to a dropped call would wait out its lease time.
        let resp = client.acquire_chunk(req).await;
        match resp {
            Ok(r) if shutdown.is_cancelled() => {
                for a in r.into_inner().assignments {
                    drain::release_unstarted(&session, a).await;
                }
            }
            Ok(r) => {
                for a in r.into_inner().assignments {
                    let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                        break;
                    };
                    let (ctx, session) = (Arc::clone(&ctx), Arc::clone(&session));
                    tasks.spawn(async move {
                        run_slot(&ctx, &session, a).await;
                        drop(permit);
                    });
                }
            }
            Err(s) if session::needs_registration(&s) => {
                tracing::warn!(error = %s.message(), "coordinator does not know this worker session; registering again");
                session.register(&shutdown).await;
            }
            Err(s) => {
                tracing::warn!(coordinator = %session.coordinators.current_url(), error = %s.message(), "cannot lease chunks");
                if is_failover_status(&s) {
                    session.coordinators.failover(&s);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(WORKER_LEASE_RETRY) => {}
                }
            }
        }
    }
    drain::drain(&mut tasks, &session, &cfg.drain).await;
    heartbeat_stop.cancel();
    let _ = hb.await;
    session.leave().await;
    metrics().slots.add(-i64::from(cfg.concurrency), &[]);
    tracing::info!("worker stopped");
    Ok(())
}

/// Runs one slot: the chunk it was leased, then each next chunk the
/// coordinator leases with the completion report (one call per chunk while
/// chunks are ready). The slot is given back to the lease loop when no next
/// chunk comes, or once shutdown (`ctx.shutdown`) has begun.
async fn run_slot(ctx: &ChunkContext, session: &Session, first: ChunkAssignment) {
    let mut queue = std::collections::VecDeque::from([first]);
    while let Some(a) = queue.pop_front() {
        if ctx.shutdown.is_cancelled() {
            // leased with the last report after the stop began: not started
            drain::release_unstarted(session, a).await;
            continue;
        }
        // a next chunk is asked for only while this slot has nothing else
        // queued (and, checked at the report, the worker is not stopping)
        let want_next = u32::from(queue.is_empty());
        queue.extend(run_chunk(ctx, session, a, want_next).await);
    }
}

/// Logs a slot task that ended by panicking outside a chunk attempt (a chunk
/// it held, no longer listed in heartbeats, is leased again by the coordinator).
fn log_slot_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            let why = panic_message(e.into_panic().as_ref());
            tracing::error!(panic = %why, "a chunk slot panicked outside a chunk attempt");
        }
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Copies one chunk and reports it, as a span in the job's trace; returns
/// the next chunks leased with the report (at most `want_next`).
async fn run_chunk(
    ctx: &ChunkContext,
    session: &Session,
    a: ChunkAssignment,
    want_next: u32,
) -> Vec<ChunkAssignment> {
    let Some(chunk) = a.chunk.as_ref() else {
        return Vec::new();
    };
    let span = tracing::info_span!(
        "ferry.chunk",
        ferry.job_id = %chunk.job_id,
        ferry.chunk = chunk.chunk_no,
        ferry.attempt = a.attempt,
        ferry.rows = Empty,
        ferry.rows_rejected = Empty,
        ferry.outcome = Empty,
        ferry.error_class = Empty,
        otel.status_code = Empty,
    );
    if !a.trace_context.is_empty() {
        let _ = span.set_parent(from_carrier(&a.trace_context));
    }
    run_chunk_in_span(ctx, session, a, want_next, &span)
        .instrument(span.clone())
        .await
}

async fn run_chunk_in_span(
    ctx: &ChunkContext,
    session: &Session,
    a: ChunkAssignment,
    want_next: u32,
    span: &tracing::Span,
) -> Vec<ChunkAssignment> {
    let Some(chunk) = a.chunk.clone() else {
        return Vec::new();
    };
    let m = metrics();
    let labels = connection_labels(&a.source, &a.target);
    m.in_flight.add(1, &[]);
    let handle = session.held.add(chunk.clone());
    let started = Instant::now();
    // A panic inside the attempt ends the attempt, not the worker's hold on
    // the chunk: its connections are dropped (the target rolls back) and the
    // chunk is reported failed, to be retried per the job's policy.
    let outcome = std::panic::AssertUnwindSafe(copy::process(ctx, &a, &handle))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let why = panic_message(panic.as_ref());
            tracing::error!(job = %chunk.job_id, chunk = chunk.chunk_no, attempt = a.attempt, panic = %why, "chunk attempt panicked; rolled back, reporting it failed");
            Outcome::Failed(DbFailure::transient(format!(
                "the worker panicked while copying the chunk ({why})"
            )))
        });
    session.held.remove(&chunk);
    m.in_flight.add(-1, &[]);
    let secs = started.elapsed().as_secs_f64();
    let (outcome_label, class) = match &outcome {
        Outcome::Committed { .. } | Outcome::AlreadyCommitted { .. } => ("committed", None),
        Outcome::Failed(f) => ("failed", Some(f.class.to_proto())),
        Outcome::Aborted(_) => ("aborted", Some(ProtoClass::Aborted)),
    };
    m.chunk_duration
        .record(secs, &[KeyValue::new("outcome", outcome_label)]);
    span.record("ferry.outcome", outcome_label);
    if let Some(class) = class {
        let name = class
            .as_str_name()
            .trim_start_matches("ERROR_CLASS_")
            .to_ascii_lowercase();
        span.record("ferry.error_class", name.as_str());
        span.record("otel.status_code", "ERROR");
    }
    // a stop that began while the chunk ran: no next chunk with the report
    let want_next = if ctx.shutdown.is_cancelled() {
        0
    } else {
        want_next
    };
    match outcome {
        Outcome::Committed {
            rows_written,
            rows_rejected,
        } => {
            m.rows_written.add(rows_written, &labels);
            m.rows_rejected.add(rows_rejected, &labels);
            m.bytes_copied.add(
                handle.bytes.load(std::sync::atomic::Ordering::Relaxed),
                &labels,
            );
            m.chunks_completed.add(1, &labels);
            span.record("ferry.rows", rows_written);
            span.record("ferry.rows_rejected", rows_rejected);
            tracing::info!(job = %chunk.job_id, chunk = chunk.chunk_no, attempt = a.attempt, rows = rows_written, secs, "chunk committed");
            session
                .report_complete(chunk, rows_written, rows_rejected, false, want_next)
                .await
        }
        Outcome::AlreadyCommitted {
            rows_written,
            rows_rejected,
        } => {
            span.record("ferry.rows", rows_written);
            span.record("ferry.rows_rejected", rows_rejected);
            tracing::info!(job = %chunk.job_id, chunk = chunk.chunk_no, attempt = a.attempt, "chunk already committed by another attempt; not copied again");
            session
                .report_complete(chunk, rows_written, rows_rejected, true, want_next)
                .await
        }
        // stopped by the worker's own drain: handed back, whatever broke on the way
        Outcome::Aborted(_)
        | Outcome::Failed(DbFailure {
            class: ErrorClass::Transient,
            ..
        }) if handle.is_released() => {
            tracing::info!(job = %chunk.job_id, chunk = chunk.chunk_no, attempt = a.attempt, "shutting down: chunk rolled back and handed back");
            drain::release(session, chunk).await;
            Vec::new()
        }
        Outcome::Failed(f) => {
            tracing::warn!(job = %chunk.job_id, chunk = chunk.chunk_no, attempt = a.attempt, error = %f.message, "chunk failed and rolled back");
            let class = f.class.to_proto();
            session
                .report_failure(chunk, class, f.message, f.sqlstate.unwrap_or_default())
                .await;
            Vec::new()
        }
        Outcome::Aborted(why) => {
            tracing::warn!(job = %chunk.job_id, chunk = chunk.chunk_no, attempt = a.attempt, reason = %why, "chunk stopped and rolled back");
            session
                .report_failure(chunk, ProtoClass::Aborted, why, String::new())
                .await;
            Vec::new()
        }
    }
}
