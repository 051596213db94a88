//! The client verbs: submit, status, watch, jobs, cancel.

use std::future::Future;

use ferry_common::client::{is_failover_status, Coordinators, JobClient};
use ferry_common::proto::{
    CancelJobRequest, GetJobRequest, Job, JobState, ListJobsRequest, ListRejectsRequest,
    RepairJobRequest, ResumeJobRequest, SubmitJobRequest, VerifyJobRequest,
};
use ferry_common::timing::RPC_TIMEOUT;
use tonic::{Code, Status};

use crate::jobspec::Tuning;
use crate::output::{print_json, OutputArg};
use crate::security_args::ClientSecurityArgs;
use crate::watch::{follow, summarize};
use crate::{EXIT_BAD_INPUT, EXIT_JOB_FAILED, EXIT_REFUSED, EXIT_UNREACHABLE};

/// Where the coordinator is.
#[derive(clap::Args, Clone, Debug)]
pub struct CoordinatorArg {
    /// Coordinator addresses, comma-separated.
    #[arg(
        long,
        env = "FERRY_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub coordinator: String,
    #[command(flatten)]
    pub security: ClientSecurityArgs,
}

/// Flags of `ferry submit`.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    coord: CoordinatorArg,
    /// Source connection name (FERRY_CONN_<NAME> on coordinator and workers).
    #[arg(long)]
    source: String,
    /// SQL query whose rows are copied.
    #[arg(long)]
    query: String,
    /// Target connection name.
    #[arg(long)]
    target: String,
    /// Target table, schema.table.
    #[arg(long)]
    table: String,
    /// Chunks of this job in flight at once (default MAPPER_MAX_WORKERS).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_workers: Option<u32>,
    /// Idempotency key: submitting the same id again returns the same job.
    #[arg(long, default_value = "")]
    request_id: String,
    /// Follow the job with a progress bar; exit 0 only if it succeeds.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    tuning: Tuning,
}

impl SubmitArgs {
    /// The coordinator these flags name.
    pub(crate) fn coordinator(&self) -> &CoordinatorArg {
        &self.coord
    }

    /// The job spec these flags describe.
    pub(crate) fn spec(&self) -> ferry_common::proto::JobSpec {
        self.tuning.spec(
            &self.source,
            &self.query,
            &self.target,
            &self.table,
            self.max_workers,
        )
    }
}

/// A job id plus the coordinator.
#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// Job id.
    job: String,
    #[command(flatten)]
    coord: CoordinatorArg,
    #[command(flatten)]
    out: OutputArg,
}

/// Flags of `ferry jobs`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    coord: CoordinatorArg,
    /// Most jobs listed (0: all).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    out: OutputArg,
}

/// Explains a failed call: unreachable coordinators are named, other errors carry the coordinator's message.
pub fn describe_status(c: &Coordinators, s: &Status) -> String {
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded => format!(
            "cannot reach the coordinator at {} ({}): is `ferry coordinator` running there? Set --coordinator or FERRY_COORDINATOR",
            c.urls().join(","),
            s.message()
        ),
        _ => s.message().to_string(),
    }
}

/// The exit code for a call the coordinator answered with `s`, by its gRPC code.
pub fn exit_code(s: &Status) -> i32 {
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown => EXIT_UNREACHABLE,
        Code::Unauthenticated | Code::PermissionDenied => EXIT_REFUSED,
        _ => EXIT_BAD_INPUT,
    }
}

/// Coordinators of `arg` with its credentials (TLS, token), calls timing out after
/// the usual RPC timeout; the exit code to return when they cannot be set up.
pub(crate) fn connect(arg: &CoordinatorArg) -> Result<Coordinators, i32> {
    connect_with(arg, Some(RPC_TIMEOUT))
}

/// Coordinators of `arg` with its credentials, calls timing out after `timeout`.
fn connect_with(
    arg: &CoordinatorArg,
    timeout: Option<std::time::Duration>,
) -> Result<Coordinators, i32> {
    let security = arg.security.load().map_err(|e| {
        eprintln!("error: {e}");
        EXIT_BAD_INPUT
    })?;
    Coordinators::with_security(&arg.coordinator, timeout, &security).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_BAD_INPUT
    })
}

/// Calls the coordinator, trying each address once when one is down or not
/// the leader (plus the leader a follower names).
pub(crate) async fn call<T, F, Fut>(c: &Coordinators, f: F) -> Result<T, i32>
where
    F: Fn(JobClient) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut tries = 0;
    loop {
        match f(c.jobs()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if is_failover_status(&s) && tries < c.len() => {
                tries += 1;
                c.failover(&s);
            }
            Err(s) => {
                eprintln!("error: {}", describe_status(c, &s));
                return Err(exit_code(&s));
            }
        }
    }
}

fn job_state(job: &Job) -> JobState {
    JobState::try_from(job.state).unwrap_or(JobState::Unspecified)
}

/// `ferry submit`.
pub async fn submit(a: SubmitArgs) -> i32 {
    let c = match connect(&a.coord) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let spec = a.spec();
    let req = SubmitJobRequest {
        request_id: a.request_id.clone(),
        spec: Some(spec),
    };
    // a caller's trace (TRACEPARENT, as CI and workflow tools set it) becomes the job's parent
    let parent = ferry_common::telemetry::traces::from_environment();
    let resp = match call(&c, |mut j| {
        let mut req = tonic::Request::new(req.clone());
        ferry_common::telemetry::traces::inject_metadata(&parent, req.metadata_mut());
        async move { j.submit_job(req).await }
    })
    .await
    {
        Ok(r) => r,
        Err(code) => return code,
    };
    if !resp.created {
        eprintln!(
            "request id {:?} was submitted before: returning its job",
            a.request_id
        );
    }
    let code = if a.watch {
        follow_to_exit(&c, &resp.job_id, false).await
    } else {
        0
    };
    println!("{}", resp.job_id);
    code
}

/// `ferry status`.
pub async fn status(a: JobArgs) -> i32 {
    let c = match connect(&a.coord) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let job = match call(&c, |mut j| {
        let id = a.job.clone();
        async move { j.get_job(GetJobRequest { job_id: id }).await }
    })
    .await
    {
        Ok(j) => j,
        Err(code) => return code,
    };
    if a.out.json() {
        print_json(&job);
        return 0;
    }
    let spec = job.spec.clone().unwrap_or_default();
    println!(
        "{} {}: {}/{} chunks succeeded, {} failed, {} rows written, {} rejected, {} retries",
        job_state(&job).label(),
        job.job_id,
        job.chunks_succeeded,
        job.chunks_total,
        job.chunks_failed,
        job.rows_written,
        job.rows_rejected,
        job.retries
    );
    println!("  {} -> {} {}", spec.source, spec.target, spec.table);
    if !job.plan.is_empty() {
        println!("  plan: {}", job.plan);
    }
    if job_state(&job) == JobState::Running && job.concurrency > 0 {
        let cap = spec.max_workers.unwrap_or(job.concurrency);
        println!(
            "  concurrency: {} of {cap} chunks in flight",
            job.concurrency
        );
    }
    if !job.waiting_for.is_empty() {
        println!("  waiting for connections on {}", job.waiting_for);
    }
    if !job.consistency_lost.is_empty() {
        println!("  consistency lost: {}", job.consistency_lost);
    }
    if !job.error.is_empty() {
        println!("  error: {}", job.error);
    }
    for ch in job.chunks.iter().filter(|ch| !ch.last_error.is_empty()) {
        println!(
            "  chunk {} (attempt {}): {}",
            ch.chunk_no, ch.attempt, ch.last_error
        );
    }
    0
}

/// `ferry watch`.
pub async fn watch(a: JobArgs) -> i32 {
    match connect(&a.coord) {
        Ok(c) => follow_to_exit(&c, &a.job, a.out.json()).await,
        Err(code) => code,
    }
}

/// Follows a job to its end, prints the summary (or, with `json`, each event
/// as a line of JSON), and maps the outcome to an exit code.
async fn follow_to_exit(c: &Coordinators, job_id: &str, json: bool) -> i32 {
    match follow(c, job_id, json).await {
        Ok(job) => {
            summarize(&job);
            if job_state(&job) == JobState::Succeeded {
                0
            } else {
                EXIT_JOB_FAILED
            }
        }
        Err(s) => {
            eprintln!("error: {}", describe_status(c, &s));
            exit_code(&s)
        }
    }
}

/// `ferry jobs`.
pub async fn jobs(a: ListArgs) -> i32 {
    let c = match connect(&a.coord) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let resp = match call(&c, |mut j| async move {
        j.list_jobs(ListJobsRequest { limit: a.limit }).await
    })
    .await
    {
        Ok(r) => r,
        Err(code) => return code,
    };
    if a.out.json() {
        print_json(&resp);
        return 0;
    }
    println!(
        "{:<13} {:<10} {:>7} {:>14}  TABLE",
        "JOB", "STATE", "CHUNKS", "ROWS"
    );
    for job in resp.jobs {
        let spec = job.spec.clone().unwrap_or_default();
        println!(
            "{:<13} {:<10} {:>7} {:>14}  {}",
            job.job_id,
            job_state(&job).label(),
            format!("{}/{}", job.chunks_succeeded, job.chunks_total),
            job.rows_written,
            spec.table
        );
    }
    0
}

/// `ferry cancel`.
pub async fn cancel(a: JobArgs) -> i32 {
    let c = match connect(&a.coord) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match call(&c, |mut j| {
        let id = a.job.clone();
        async move { j.cancel_job(CancelJobRequest { job_id: id }).await }
    })
    .await
    {
        Ok(job) => {
            println!("{} {}", job_state(&job).label(), job.job_id);
            0
        }
        Err(code) => code,
    }
}

/// Flags of `ferry rejects`.
#[derive(clap::Args, Debug)]
pub struct RejectsArgs {
    /// Job id.
    job: String,
    #[command(flatten)]
    coord: CoordinatorArg,
    /// Most rows listed.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    out: OutputArg,
}

/// Flags of `ferry repair`.
#[derive(clap::Args, Debug)]
pub struct RepairArgs {
    /// Job id.
    job: String,
    #[command(flatten)]
    coord: CoordinatorArg,
    /// Chunks to copy again (default: those `verify` finds differing).
    #[arg(long, value_delimiter = ',')]
    chunks: Vec<u32>,
    /// Return at once instead of following the repair.
    #[arg(long)]
    no_watch: bool,
}

/// A coordinator list for calls that may run long (verify scans both databases).
pub(crate) fn connect_long(arg: &CoordinatorArg) -> Result<Coordinators, i32> {
    connect_with(arg, None)
}

/// `ferry rejects`.
pub async fn rejects(a: RejectsArgs) -> i32 {
    let c = match connect(&a.coord) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let req = ListRejectsRequest {
        job_id: a.job.clone(),
        limit: a.limit,
    };
    let resp = match call(&c, |mut j| {
        let req = req.clone();
        async move { j.list_rejects(req).await }
    })
    .await
    {
        Ok(r) => r,
        Err(code) => return code,
    };
    if a.out.json() {
        print_json(&resp);
        return 0;
    }
    println!("{} rejected rows in job {}", resp.total, a.job);
    for r in &resp.rejects {
        println!(
            "chunk {}\tkey {}\t{}\t{}\t{}",
            r.chunk_no, r.key, r.sqlstate, r.message, r.row
        );
    }
    if (resp.rejects.len() as u64) < resp.total {
        println!(
            "… {} more (raise --limit)",
            resp.total - resp.rejects.len() as u64
        );
    }
    0
}

/// `ferry verify`: exits 0 when every chunk matches, 1 otherwise.
pub async fn verify(a: JobArgs) -> i32 {
    let c = match connect_long(&a.coord) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let resp = match call(&c, |mut j| {
        let id = a.job.clone();
        async move { j.verify_job(VerifyJobRequest { job_id: id }).await }
    })
    .await
    {
        Ok(r) => r,
        Err(code) => return code,
    };
    let bad: Vec<_> = resp.chunks.iter().filter(|c| !c.matches).collect();
    if a.out.json() {
        print_json(&resp);
        return if bad.is_empty() { 0 } else { EXIT_JOB_FAILED };
    }
    for ch in &bad {
        println!(
            "chunk {} differs: source {} rows, target {} rows, {} rejected ({})",
            ch.chunk_no, ch.source_rows, ch.target_rows, ch.rejected_rows, ch.range
        );
    }
    if bad.is_empty() {
        println!("all {} chunks match", resp.chunks.len());
        // chunk 0 is one check standing for every chunk: say which and why
        for ch in resp.chunks.iter().filter(|c| c.chunk_no == 0) {
            println!("compared {}", ch.range);
        }
        0
    } else {
        println!(
            "{} of {} chunks differ: `ferry repair {}` copies them again",
            bad.len(),
            resp.chunks.len(),
            a.job
        );
        EXIT_JOB_FAILED
    }
}

/// `ferry repair`: copies differing chunks again and follows the job.
pub async fn repair(a: RepairArgs) -> i32 {
    let c = match connect_long(&a.coord) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let req = RepairJobRequest {
        job_id: a.job.clone(),
        chunks: a.chunks.clone(),
    };
    let job = match call(&c, |mut j| {
        let req = req.clone();
        async move { j.repair_job(req).await }
    })
    .await
    {
        Ok(j) => j,
        Err(code) => return code,
    };
    finish_rerun(&c, job, a.no_watch).await
}

/// `ferry resume`: runs the unfinished chunks of a failed or cancelled job.
pub async fn resume(a: JobArgs) -> i32 {
    let c = match connect(&a.coord) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let job = match call(&c, |mut j| {
        let id = a.job.clone();
        async move { j.resume_job(ResumeJobRequest { job_id: id }).await }
    })
    .await
    {
        Ok(j) => j,
        Err(code) => return code,
    };
    finish_rerun(&c, job, false).await
}

async fn finish_rerun(c: &Coordinators, job: Job, no_watch: bool) -> i32 {
    let code = if no_watch || job_state(&job).is_terminal() {
        if job_state(&job) == JobState::Failed {
            EXIT_JOB_FAILED
        } else {
            0
        }
    } else {
        follow_to_exit(c, &job.job_id, false).await
    };
    println!("{}", job.job_id);
    code
}
