//! The coordinator's connection budget from the environment:
//! `FERRY_CONN_<NAME>_MAX_CONNECTIONS` per connection, `FERRY_CONNECTION_SHARE`
//! for the default of the others (25 % of the server's connections), and
//! `FERRY_POOL_IDLE_TIMEOUT` (as the workers have it) for how long a session a
//! worker keeps pooled still counts.

use ferry_common::connections::ConnectionRegistry;
use ferry_common::timing::{pooled_linger, DEFAULT_POOL_IDLE_TIMEOUT};
use ferry_coordinator::budget::limits::{limits_from_vars, parse_share};
use ferry_coordinator::budget::{Budget, DEFAULT_SHARE};

use crate::duration::parse_duration;

/// The variable setting the default share of a server's connections.
pub const SHARE_VAR: &str = "FERRY_CONNECTION_SHARE";

/// The variable setting how long workers keep idle connections.
pub const POOL_IDLE_VAR: &str = "FERRY_POOL_IDLE_TIMEOUT";

/// Builds the budget over `connections` from the process environment, or
/// explains which variable is wrong.
pub fn connection_budget(connections: &ConnectionRegistry) -> Result<Budget, String> {
    let explicit = limits_from_vars(std::env::vars()).map_err(|e| e.to_string())?;
    let share = match std::env::var(SHARE_VAR) {
        Ok(v) => parse_share(&v).map_err(|e| e.to_string())?,
        Err(_) => DEFAULT_SHARE,
    };
    let idle = match std::env::var(POOL_IDLE_VAR) {
        Ok(v) => parse_duration(&v).map_err(|e| format!("{POOL_IDLE_VAR}: {e}"))?,
        Err(_) => DEFAULT_POOL_IDLE_TIMEOUT,
    };
    for (name, limit) in &explicit {
        tracing::info!(connection = %name, limit, "connection budget set by FERRY_CONN_<NAME>_MAX_CONNECTIONS");
    }
    Ok(Budget::new(
        Some(connections.clone()),
        explicit,
        share,
        pooled_linger(idle),
    )
    .with_pool_idle(idle))
}
