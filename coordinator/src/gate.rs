//! Which role this coordinator plays right now: the leader serves through its
//! scheduler; a follower answers UNAVAILABLE naming the leader, and reports
//! NOT_SERVING on gRPC health so a Kubernetes Service routes to the leader alone.

use std::sync::{Arc, RwLock};

use ferry_common::proto::job_service_server::JobServiceServer;
use ferry_common::proto::worker_service_server::WorkerServiceServer;
use tonic_health::server::HealthReporter;

use crate::api::{JobApi, WorkerApi};
use crate::error::CoordinatorError;
use crate::scheduler::Scheduler;

enum Role {
    Follower { leader: Option<String> },
    Leader(Arc<Scheduler>),
}

/// The coordinator's current role, shared by the gRPC services.
pub struct Gate {
    role: RwLock<Role>,
    health: HealthReporter,
}

impl Gate {
    /// A gate that starts as a follower with no known leader.
    pub fn new(health: HealthReporter) -> Arc<Self> {
        Arc::new(Self {
            role: RwLock::new(Role::Follower { leader: None }),
            health,
        })
    }

    /// The scheduler, when this coordinator leads.
    pub fn scheduler(&self) -> Result<Arc<Scheduler>, CoordinatorError> {
        match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Leader(s) => Ok(Arc::clone(s)),
            Role::Follower { leader } => Err(CoordinatorError::NotLeader {
                leader: leader.clone(),
            }),
        }
    }

    /// Starts serving as leader through `scheduler`.
    pub async fn lead(&self, scheduler: Arc<Scheduler>) {
        *self.role.write().unwrap_or_else(|p| p.into_inner()) = Role::Leader(scheduler);
        crate::metrics::events().leader_changes.add(1, &[]);
        self.health.set_serving::<JobServiceServer<JobApi>>().await;
        self.health
            .set_serving::<WorkerServiceServer<WorkerApi>>()
            .await;
        self.health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
    }

    /// Serves as a follower of `leader`.
    pub async fn follow(&self, leader: Option<String>) {
        *self.role.write().unwrap_or_else(|p| p.into_inner()) = Role::Follower { leader };
        self.health
            .set_not_serving::<JobServiceServer<JobApi>>()
            .await;
        self.health
            .set_not_serving::<WorkerServiceServer<WorkerApi>>()
            .await;
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    }

    /// Updates the leader address a follower reports.
    pub fn set_leader(&self, leader: Option<String>) {
        let mut role = self.role.write().unwrap_or_else(|p| p.into_inner());
        if let Role::Follower { leader: l } = &mut *role {
            *l = leader;
        }
    }
}
