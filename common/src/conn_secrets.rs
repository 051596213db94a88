//! Connections defined by reference to files, as Kubernetes mounts Secrets:
//! `FERRY_CONN_<NAME>_FILE` holds the URL, `FERRY_CONN_<NAME>_PASSWORD_FILE`
//! the password kept apart from it. These suffixes (and `_MAX_CONNECTIONS`)
//! are attributes of connection `<NAME>`, not connections of their own, so no
//! connection name may end with one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::connections::ENV_PREFIX;

/// Attribute suffixes of `FERRY_CONN_<NAME>…` variables, longest first.
pub const ATTRIBUTE_SUFFIXES: [&str; 3] = ["_PASSWORD_FILE", "_MAX_CONNECTIONS", "_FILE"];

/// The attribute suffix `name` ends with (any case), if any.
pub fn attribute_suffix(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    ATTRIBUTE_SUFFIXES.into_iter().find(|s| upper.ends_with(s))
}

/// Connection variables that cannot be used; names the variable and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionEnvError {
    /// A referenced file cannot be read.
    #[error("cannot read {var}={path}: {source}")]
    Read {
        /// The variable.
        var: String,
        /// The file it names.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Both the URL and the URL file are set.
    #[error("{name} is set both as {ENV_PREFIX}{name} and {ENV_PREFIX}{name}_FILE: keep one")]
    Twice {
        /// The connection.
        name: String,
    },
    /// A password file for a connection without a URL.
    #[error("{ENV_PREFIX}{name}_PASSWORD_FILE is set but neither {ENV_PREFIX}{name} nor {ENV_PREFIX}{name}_FILE")]
    PasswordWithoutUrl {
        /// The connection.
        name: String,
    },
    /// A password file and a password in the URL.
    #[error("connection {name} has a password in its URL and in {ENV_PREFIX}{name}_PASSWORD_FILE: keep one")]
    PasswordTwice {
        /// The connection.
        name: String,
    },
    /// A name that is not `[A-Za-z0-9_]+`.
    #[error("{ENV_PREFIX}{name}: connection names are letters, digits and _")]
    BadName {
        /// The name.
        name: String,
    },
}

#[derive(Default)]
struct Parts {
    url: Option<String>,
    url_file: Option<(String, PathBuf)>,
    password_file: Option<(String, PathBuf)>,
}

/// The `(name, url)` of every connection among environment variables `vars`,
/// URLs read from their files and passwords put in.
pub fn from_vars(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConnectionEnvError> {
    let mut parts: BTreeMap<String, Parts> = BTreeMap::new();
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let (name, attribute) = match attribute_suffix(rest) {
            Some(suffix) => (&rest[..rest.len() - suffix.len()], Some(suffix)),
            None => (rest, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ConnectionEnvError::BadName { name: rest.into() });
        }
        let p = parts.entry(name.to_ascii_uppercase()).or_default();
        match attribute {
            None => p.url = Some(value),
            Some("_FILE") => p.url_file = Some((var.clone(), PathBuf::from(value))),
            Some("_PASSWORD_FILE") => p.password_file = Some((var.clone(), PathBuf::from(value))),
            // _MAX_CONNECTIONS and future attributes belong to their readers
            Some(_) => {}
        }
    }
    let read = |var: &str, path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|source| ConnectionEnvError::Read {
            var: var.to_string(),
            path: path.clone(),
            source,
        })
    };
    let mut out = Vec::new();
    for (name, p) in parts {
        let url = match (p.url, &p.url_file) {
            (Some(_), Some(_)) => return Err(ConnectionEnvError::Twice { name }),
            (Some(url), None) => url,
            (None, Some((var, path))) => read(var, path)?.trim().to_string(),
            (None, None) if p.password_file.is_some() => {
                return Err(ConnectionEnvError::PasswordWithoutUrl { name })
            }
            (None, None) => continue,
        };
        let url = match &p.password_file {
            Some((var, path)) => {
                let password = read(var, path)?;
                with_password(&url, password.trim_end_matches(['\r', '\n']))
                    .ok_or(ConnectionEnvError::PasswordTwice { name: name.clone() })?
            }
            None => url,
        };
        out.push((name, url));
    }
    Ok(out)
}

/// `url` with `password` added (`None` when it already has one): as a
/// percent-encoded `password=` parameter of a URL, or a quoted `password='…'`
/// of the `key=value` form.
pub fn with_password(url: &str, password: &str) -> Option<String> {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        let in_userinfo = authority
            .rfind('@')
            .is_some_and(|at| authority[..at].contains(':'));
        let in_query = url
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("password=")));
        if in_userinfo || in_query {
            return None;
        }
        let encoded: String = password
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let sep = if url.contains('?') { '&' } else { '?' };
        return Some(format!("{url}{sep}password={encoded}"));
    }
    if crate::connections::kv_tokens(url)
        .iter()
        .any(|kv| kv.starts_with("password="))
    {
        return None;
    }
    let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
    Some(format!("{url} password='{quoted}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_attributes() {
        assert_eq!(
            attribute_suffix("SRC_PASSWORD_FILE"),
            Some("_PASSWORD_FILE")
        );
        assert_eq!(attribute_suffix("src_file"), Some("_FILE"));
        assert_eq!(
            attribute_suffix("SRC_MAX_CONNECTIONS"),
            Some("_MAX_CONNECTIONS")
        );
        assert_eq!(attribute_suffix("SRC"), None);
    }

    #[test]
    fn reads_urls_and_passwords_from_files() {
        let dir = std::env::temp_dir().join(format!("ferry-conn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url_file = dir.join("url");
        let pw_file = dir.join("pw");
        std::fs::write(&url_file, "postgres://u@h/db?sslmode=require\n").unwrap();
        std::fs::write(&pw_file, "p@ss word\n").unwrap();
        let vars = vec![
            (
                "FERRY_CONN_SRC_FILE".to_string(),
                url_file.display().to_string(),
            ),
            (
                "FERRY_CONN_SRC_PASSWORD_FILE".to_string(),
                pw_file.display().to_string(),
            ),
            (
                "FERRY_CONN_SRC_MAX_CONNECTIONS".to_string(),
                "4".to_string(),
            ),
            ("FERRY_CONN_DST".to_string(), "host=h user=u".to_string()),
            (
                "FERRY_CONN_DST_PASSWORD_FILE".to_string(),
                pw_file.display().to_string(),
            ),
        ];
        let conns = from_vars(vars).unwrap();
        assert_eq!(
            conns,
            vec![
                (
                    "DST".to_string(),
                    "host=h user=u password='p@ss word'".to_string()
                ),
                (
                    "SRC".to_string(),
                    "postgres://u@h/db?sslmode=require&password=p%40ss%20word".to_string()
                ),
            ]
        );
        let e = from_vars(vec![
            ("FERRY_CONN_X".to_string(), "postgres://h".to_string()),
            (
                "FERRY_CONN_X_FILE".to_string(),
                url_file.display().to_string(),
            ),
        ])
        .unwrap_err();
        assert!(matches!(e, ConnectionEnvError::Twice { .. }), "{e}");
        assert_eq!(with_password("postgres://u:p@h/db", "x"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
