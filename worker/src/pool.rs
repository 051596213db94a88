//! Idle database connections kept per named connection, so chunks do not pay
//! a connection set-up each.

use std::collections::HashMap;
use std::sync::Mutex;

use ferry_common::connections::ConnectionRegistry;
use ferry_common::db::connect;
use ferry_common::errors::{DbFailure, ErrorClass};
use tokio_postgres::Client;

/// Most idle connections kept per name.
const MAX_IDLE: usize = 8;

/// A small pool of idle connections by connection name.
pub struct Pool {
    registry: ConnectionRegistry,
    idle: Mutex<HashMap<String, Vec<Client>>>,
}

impl Pool {
    /// An empty pool over `registry`.
    pub fn new(registry: ConnectionRegistry) -> Self {
        Self {
            registry,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// An open connection to `name`: an idle one, or a new one.
    pub async fn get(&self, name: &str) -> Result<Client, DbFailure> {
        loop {
            let c = self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(name)
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
        connect(name, url).await
    }

    /// Returns a healthy connection for reuse.
    pub fn put(&self, name: &str, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let v = idle.entry(name.to_string()).or_default();
        if v.len() < MAX_IDLE {
            v.push(client);
        }
    }
}
