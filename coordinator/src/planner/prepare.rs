//! Planning for a real run: the steps around `plan_job` that write to the
//! target (create the table with `--create-table`, create Ferry's ledger).
//! A dry run (`dry_run`) skips them; `plan_job` itself writes nothing.

use ferry_common::connections::ConnectionRegistry;
use ferry_common::proto::JobSpec;
use ferry_connectors::db::catalog;
use ferry_connectors::postgres::snapshot::SnapshotId;

use super::{plan_job_in, typed, Plan, PlanError};

/// Plans a job that is going to run: creates the target table first when
/// `--create-table` asks for it and it is missing, plans, then ensures the
/// ledger exists (only once the plan holds, so a job that cannot be planned
/// leaves no ledger behind); sampling in the job's exported `snapshot`.
pub async fn plan_for_run(
    spec: &JobSpec,
    job_id: &str,
    conns: &ConnectionRegistry,
    ledger_schema: &str,
    snapshot: Option<&SnapshotId>,
) -> Result<Plan, PlanError> {
    if spec.create_table {
        let query = super::bare_query(&spec.query);
        typed::create_if_missing(spec, job_id, conns, query).await?;
    }
    let plan = plan_job_in(spec, job_id, conns, snapshot).await?;
    let mut target = typed::open(conns, &spec.target, job_id).await?;
    catalog::ensure_ledger(&mut target, ledger_schema).await?;
    Ok(plan)
}
