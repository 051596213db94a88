//! Every end-to-end test in one binary: one link instead of one per file,
//! and one pool of test threads over all of them. Each file stays a module
//! named for it (`cargo test -p ferry-tests --test e2e -- chaos_workers::`).

mod adaptive_concurrency_e2e;
mod chaos_leaders;
mod chaos_mix;
mod chaos_workers;
mod chunk_auto_e2e;
mod chunk_resplit_e2e;
mod concurrency_e2e;
mod connection_budget_e2e;
mod connectors_e2e;
mod connectors_failures_e2e;
mod connectors_tls_e2e;
mod connectors_types_e2e;
mod core_e2e;
mod etcd_tls_secrets_e2e;
mod failures_e2e;
mod faults_e2e;
mod harness;
mod harness_mariadb;
mod input_e2e;
mod keys_composite_e2e;
mod keys_e2e;
mod ledger_gc_connectors_e2e;
mod lifecycle_e2e;
mod mixed_versions_e2e;
mod modes_e2e;
mod names_e2e;
mod observability_history;
mod observability_metrics;
mod observability_traces;
mod pg_tls_e2e;
mod plan_dry_run_e2e;
mod planner_split_e2e;
mod rejects_e2e;
mod repair_keyless_e2e;
mod retention_e2e;
mod security_tls_e2e;
mod snapshot_e2e;
mod types_e2e;
mod verify_collation_e2e;
mod verify_resume_e2e;
