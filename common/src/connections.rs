//! Named connections: jobs say `source: "warehouse"`, the process environment
//! says `FERRY_CONN_WAREHOUSE=postgres://…`. URLs and passwords never leave here
//! except to open a connection.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Prefix of the environment variables that define connections.
pub const ENV_PREFIX: &str = "FERRY_CONN_";

/// A job named a connection this process does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown connection '{name}': set {var}=postgres://… (or {var}_FILE naming a file that holds the URL) on the coordinator and every worker")]
pub struct UnknownConnection {
    /// The name used in the job.
    pub name: String,
    /// The variable that would define it.
    pub var: String,
}

/// The connections this process can open, by lower-case name.
#[derive(Debug, Clone, Default)]
pub struct ConnectionRegistry {
    urls: Arc<BTreeMap<String, String>>,
}

impl ConnectionRegistry {
    /// Reads every connection of the process environment: `FERRY_CONN_<NAME>`,
    /// or the files of `FERRY_CONN_<NAME>_FILE` and `…_PASSWORD_FILE`
    /// (`conn_secrets`).
    pub fn from_env() -> Result<Self, crate::conn_secrets::ConnectionEnvError> {
        Ok(Self::from_pairs(crate::conn_secrets::from_vars(
            std::env::vars(),
        )?))
    }

    /// Builds a registry from `(name, url)` pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let urls = pairs
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Self {
            urls: Arc::new(urls),
        }
    }

    /// The URL of a named connection.
    pub fn url(&self, name: &str) -> Result<&str, UnknownConnection> {
        self.urls
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .ok_or_else(|| UnknownConnection {
                name: name.to_string(),
                var: format!("{ENV_PREFIX}{}", name.to_ascii_uppercase()),
            })
    }

    /// The names known, for start-up logs.
    pub fn names(&self) -> Vec<String> {
        self.urls.keys().cloned().collect()
    }
}

/// Removes the password from a connection string so it can be logged: the
/// URL's `user:password@` and any `password=` parameter, in URL or
/// `key=value` form.
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let mut out = url.to_string();
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                out = format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        return match out.split_once('?') {
            Some((base, query)) => {
                let masked: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => pair.to_string(),
                    })
                    .collect();
                format!("{base}?{}", masked.join("&"))
            }
            None => out,
        };
    }
    // key=value form: hide password=…
    kv_tokens(url)
        .into_iter()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `key=value` items of a connection string in libpq's key/value form,
/// as slices of it: whitespace separates items except inside single quotes
/// (where `\'` and `\\` escape).
pub fn kv_tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '\'' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&text[s..i]);
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(i);
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_case_insensitively_and_explains_misses() {
        let r = ConnectionRegistry::from_pairs([("SRC".to_string(), "postgres://x".to_string())]);
        assert_eq!(r.url("src").unwrap(), "postgres://x");
        let e = r.url("wh").unwrap_err().to_string();
        assert!(e.contains("FERRY_CONN_WH"), "{e}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("host=h password=secret"), "host=h password=***");
        assert_eq!(
            redact("host=h password='a  b\\' c' user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=secret"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
    }
}
