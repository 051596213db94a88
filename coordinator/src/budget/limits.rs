//! Where a named connection's limit comes from: `FERRY_CONN_<NAME>_MAX_CONNECTIONS`
//! when set, otherwise the server's own limit times a share
//! (`FERRY_CONNECTION_SHARE`, the operations guide's 20–30 %; 25 % by default).

use std::collections::BTreeMap;

use ferry_common::conn_secrets::attribute_suffix;
use ferry_common::connections::{ConnectionRegistry, ENV_PREFIX};
use ferry_common::db::DbRole;
use ferry_connectors::db::{self, capacity};

/// Suffix of the variable that sets a connection's limit.
pub const MAX_SUFFIX: &str = "_MAX_CONNECTIONS";

/// The share of a server's connections Ferry takes by default (25 %).
pub const DEFAULT_SHARE: f64 = 0.25;

/// Fewest connections a derived limit grants: one chunk holds a source and a
/// target connection, both may be on the same connection, and a SNAPSHOT job
/// holds its exported snapshot's source session beside them (with 2 such a
/// job could never run, and would wait for ever).
pub const MIN_DERIVED: u32 = 3;

/// A limit or share that cannot be used; names the variable and the fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LimitError {
    /// `FERRY_CONN_<NAME>_MAX_CONNECTIONS` is not a positive whole number.
    #[error("{var}={value}: give a whole number of connections of 1 or more")]
    BadLimit {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
    },
    /// `FERRY_CONNECTION_SHARE` is not a share of the server's connections.
    #[error("FERRY_CONNECTION_SHARE={0}: give a share above 0 and at most 1 (0.25) or a percentage (25%)")]
    BadShare(String),
}

/// The explicit limits among environment variables `vars`, by lower-case name.
pub fn limits_from_vars(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, u32>, LimitError> {
    let mut out = BTreeMap::new();
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if attribute_suffix(rest) != Some(MAX_SUFFIX) {
            continue;
        }
        let name = &rest[..rest.len() - MAX_SUFFIX.len()];
        let n = value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| LimitError::BadLimit {
                var: var.clone(),
                value: value.clone(),
            })?;
        out.insert(name.to_ascii_lowercase(), n);
    }
    Ok(out)
}

/// Parses a share: `0.25` or `25%`, above 0 and at most 1.
pub fn parse_share(text: &str) -> Result<f64, LimitError> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    };
    match value {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(LimitError::BadShare(text.to_string())),
    }
}

/// The default limit of a connection on a server that accepts
/// `max_connections` with `reserved` kept for superusers:
/// `(max_connections − reserved) × share`, rounded down, at least `MIN_DERIVED`.
pub fn derived_limit(max_connections: u32, reserved: u32, share: f64) -> u32 {
    let usable = max_connections.saturating_sub(reserved) as f64;
    ((usable * share).floor() as u32).max(MIN_DERIVED)
}

/// Reads the server behind connection `name` and derives its limit (`None`:
/// no limit, SQLite). The session is closed before this returns.
pub(super) async fn derive(
    registry: &ConnectionRegistry,
    name: &str,
    share: f64,
) -> Result<Option<u32>, String> {
    let url = registry.url(name).map_err(|e| e.to_string())?;
    let mut conn = db::open(DbRole::Planner, name, url, Some("ferry:budget"))
        .await
        .map_err(|e| e.message)?;
    let cap = capacity::server_capacity(&mut conn)
        .await
        .map_err(|e| e.message)?;
    drop(conn);
    Ok(cap.map(|c| {
        let limit = derived_limit(c.max_connections, c.reserved, share);
        tracing::info!(
            connection = %name,
            limit,
            max_connections = c.max_connections,
            superuser_reserved = c.reserved,
            share,
            "connection budget derived from the server: (max_connections - superuser_reserved_connections) x share; set {ENV_PREFIX}{}{MAX_SUFFIX} to choose",
            name.to_ascii_uppercase()
        );
        limit
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_a_share_of_the_usable_connections() {
        // PostgreSQL's defaults: 100 connections, 3 for superusers
        assert_eq!(derived_limit(100, 3, 0.25), 24);
        assert_eq!(derived_limit(100, 3, 0.2), 19);
        assert_eq!(derived_limit(500, 3, 0.3), 149);
        // MySQL's default 151, nothing reserved
        assert_eq!(derived_limit(151, 0, 0.25), 37);
        // never below one chunk's source and target
        assert_eq!(derived_limit(5, 3, 0.25), 3);
        assert_eq!(derived_limit(2, 3, 0.25), 3);
    }

    #[test]
    fn parses_shares_and_limits() {
        assert_eq!(parse_share("25%"), Ok(0.25));
        assert_eq!(parse_share("0.3"), Ok(0.3));
        assert_eq!(parse_share("1"), Ok(1.0));
        assert!(parse_share("0").is_err());
        assert!(parse_share("150%").is_err());
        assert!(parse_share("lots").is_err());
        let vars = [
            ("FERRY_CONN_SRC", "postgres://h/db"),
            ("FERRY_CONN_SRC_MAX_CONNECTIONS", "4"),
            ("FERRY_CONN_dst_max_connections", " 10 "),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let limits = limits_from_vars(vars).unwrap();
        assert_eq!(limits.get("src"), Some(&4));
        assert_eq!(limits.get("dst"), Some(&10));
        assert_eq!(limits.len(), 2);
        let e =
            limits_from_vars([("FERRY_CONN_SRC_MAX_CONNECTIONS".into(), "0".into())]).unwrap_err();
        assert!(
            e.to_string().contains("FERRY_CONN_SRC_MAX_CONNECTIONS=0"),
            "{e}"
        );
    }
}
