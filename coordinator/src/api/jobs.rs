//! `ferry.v1.JobService`: submit, inspect, watch and cancel jobs.

use std::pin::Pin;
use std::sync::Arc;

use ferry_common::proto::job_service_server::JobService;
use ferry_common::proto::{
    CancelJobRequest, GetJobRequest, Job, JobEvent, JobState, ListJobsRequest, ListJobsResponse,
    SubmitJobRequest, SubmitJobResponse, WatchJobRequest,
};
use ferry_common::timing::WATCH_INTERVAL;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::error::CoordinatorError;
use crate::scheduler::Scheduler;

/// The JobService implementation.
pub struct JobApi {
    scheduler: Arc<Scheduler>,
}

impl JobApi {
    /// A JobService over `scheduler`.
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        Self { scheduler }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<JobEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let req = request.into_inner();
        let spec = req
            .spec
            .ok_or_else(|| CoordinatorError::InvalidArgument("the request has no job spec".into()))?;
        let (job_id, created) = self.scheduler.submit(req.request_id, spec).await?;
        Ok(Response::new(SubmitJobResponse { job_id, created }))
    }

    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        Ok(Response::new(self.scheduler.get_job(&request.into_inner().job_id).await?))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let jobs = self.scheduler.list_jobs(request.into_inner().limit as usize).await;
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    type WatchJobStream = EventStream;

    async fn watch_job(
        &self,
        request: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let job_id = request.into_inner().job_id;
        let first = self.scheduler.get_job(&job_id).await?;
        let scheduler = Arc::clone(&self.scheduler);
        let stream = async_stream(scheduler, job_id, first);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel_job(&self, request: Request<CancelJobRequest>) -> Result<Response<Job>, Status> {
        Ok(Response::new(self.scheduler.cancel(&request.into_inner().job_id).await?))
    }
}

/// Sends the job now and then every watch interval while it changes, ending
/// after the terminal state has been sent.
fn async_stream(
    scheduler: Arc<Scheduler>,
    job_id: String,
    first: Job,
) -> impl Stream<Item = Result<JobEvent, Status>> + Send + 'static {
    futures::stream::unfold(Some((scheduler, job_id, first, true)), |state| async move {
        let (scheduler, job_id, last, send_last) = state?;
        if send_last {
            let done = JobState::try_from(last.state).is_ok_and(|s| s.is_terminal());
            let next = if done { None } else { Some((scheduler, job_id, last.clone(), false)) };
            return Some((Ok(JobEvent { job: Some(last) }), next));
        }
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            match scheduler.get_job(&job_id).await {
                Ok(mut job) => {
                    job.chunks.clear();
                    let changed = job.state != last.state
                        || job.rows_written != last.rows_written
                        || job.chunks_succeeded != last.chunks_succeeded
                        || job.chunks_total != last.chunks_total;
                    if changed {
                        let done = JobState::try_from(job.state).is_ok_and(|s| s.is_terminal());
                        let next = if done { None } else { Some((scheduler, job_id, job.clone(), false)) };
                        return Some((Ok(JobEvent { job: Some(job) }), next));
                    }
                }
                Err(e) => return Some((Err(Status::from(e)), None)),
            }
        }
    })
}
