//! The coordinator's integration tests, one binary: the scheduler over synthetic
//! plans and real etcd, the stores, leader roles and the planner against PostgreSQL.

mod replica;
mod synthetic;

mod bulk_writes;
mod leader_roles;
mod lease_next;
mod leave;
mod ownership;
mod planner_ctid_scan;
mod probes_and_hint;
mod retry_order;
mod store_conformance;
mod store_formats;
mod store_resplit;
mod submit_deadline;
mod txn_limit;
