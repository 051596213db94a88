//! Idle database connections kept per named connection, so chunks do not pay
//! a connection set-up each.

use std::collections::HashMap;
use std::sync::Mutex;

use ferry_common::connections::ConnectionRegistry;
use ferry_common::db::{connect_as, DbRole};
use ferry_common::errors::{DbFailure, ErrorClass};
use tokio_postgres::Client;

/// Most idle connections kept per name.
const MAX_IDLE: usize = 8;

/// A small pool of idle connections by connection name and role (a
/// connection serves one role for its life, so metrics label it rightly).
pub struct Pool {
    registry: ConnectionRegistry,
    idle: Mutex<HashMap<(String, DbRole), Vec<Client>>>,
}

impl Pool {
    /// An empty pool over `registry`.
    pub fn new(registry: ConnectionRegistry) -> Self {
        Self {
            registry,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// An open connection to `name` for `role`: an idle one, or a new one.
    pub async fn get(&self, name: &str, role: DbRole) -> Result<Client, DbFailure> {
        let key = (name.to_string(), role);
        loop {
            let c = self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&key)
                .and_then(Vec::pop);
            match c {
                Some(c) if !c.is_closed() => return Ok(c),
                Some(_) => continue,
                None => break,
            }
        }
        let url = self.registry.url(name).map_err(|e| DbFailure {
            class: ErrorClass::Permanent,
            sqlstate: None,
            message: e.to_string(),
        })?;
        connect_as(role, name, url).await
    }

    /// Returns a healthy connection for reuse.
    pub fn put(&self, name: &str, role: DbRole, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let v = idle.entry((name.to_string(), role)).or_default();
        if v.len() < MAX_IDLE {
            v.push(client);
        }
    }
}
