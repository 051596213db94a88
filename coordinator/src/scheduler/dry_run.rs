//! `PlanJob`: checks a spec as a submission would and plans it without
//! storing a job or writing to any database.

use ferry_common::proto::{JobSpec, PlanJobResponse};

use super::spec::resolve_spec;
use super::Scheduler;
use crate::error::CoordinatorError;
use crate::planner::dry_run::{dry_run, DRY_RUN_ID};

impl Scheduler {
    /// Plans `spec` as a dry run: the spec is validated and its defaults
    /// resolved as `submit` does, then planned; no job is stored.
    pub async fn plan_dry(&self, spec: JobSpec) -> Result<PlanJobResponse, CoordinatorError> {
        let spec = resolve_spec(spec, &self.config.defaults, &self.config.connections)
            .map_err(CoordinatorError::InvalidArgument)?;
        // the planner's sessions count against the connection budget, as a run's do
        let _sessions = self
            .reserve_for(DRY_RUN_ID, &[&spec.source, &spec.target])
            .await;
        dry_run(&spec, &self.config.connections)
            .await
            .map_err(|e| CoordinatorError::Database(format!("planning failed: {}", e.message)))
    }
}
