//! The budget's metrics: sessions in use and the limit, per connection.

use std::sync::Arc;

use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;

use crate::gate::Gate;

/// Registers `ferry_connection_budget_in_use` and `ferry_connection_budget_limit`
/// (labelled `connection`) over the budget of the scheduler behind `gate`;
/// a follower exports neither.
pub fn register_gauges(m: &Meter, gate: Arc<Gate>) {
    let g = Arc::clone(&gate);
    m.u64_observable_gauge("ferry_connection_budget_in_use")
        .with_description("Sessions the connection budget counts on a named connection: chunks leased, sessions workers keep pooled, the coordinator's own")
        .with_callback(move |o| {
            let Ok(s) = g.scheduler() else { return };
            for u in s.config().lifecycle.budget.usage() {
                o.observe(u64::from(u.in_use), &[KeyValue::new("connection", u.name)]);
            }
        })
        .build();
    m.u64_observable_gauge("ferry_connection_budget_limit")
        .with_description("Most sessions Ferry holds on a named connection at once (FERRY_CONN_<NAME>_MAX_CONNECTIONS or the server's share); absent when unlimited")
        .with_callback(move |o| {
            let Ok(s) = gate.scheduler() else { return };
            for u in s.config().lifecycle.budget.usage() {
                if let Some(limit) = u.limit {
                    o.observe(u64::from(limit), &[KeyValue::new("connection", u.name)]);
                }
            }
        })
        .build();
}
