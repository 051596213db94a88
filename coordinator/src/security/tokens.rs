//! The tokens file (`FERRY_AUTH_TOKENS_FILE`): one line per credential,
//! `<sha256 hex of the token> <name> <role>`, `#` comments. The file holds
//! only hashes, never tokens; the coordinator hashes what a client presents
//! (surrounding whitespace trimmed) and looks it up. Client certificates are
//! looked up by their common name in the `name` column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::roles::Role;

/// A tokens file that cannot be used; names the file, the line and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file cannot be read.
    #[error("cannot read FERRY_AUTH_TOKENS_FILE {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("FERRY_AUTH_TOKENS_FILE {path} line {line}: {problem}; lines read `<sha256 hex of the token> <name> <viewer|operator|admin>`")]
    Line {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// One credential of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who it is (the audit log's `who`).
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// The parsed tokens file.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Entry>,
    by_name: HashMap<String, Role>,
}

/// The lowercase hex SHA-256 of a token as the file stores it (whitespace trimmed).
pub fn token_hash_hex(token: &str) -> String {
    hex(&Sha256::digest(token.trim().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the file's text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, TokensError> {
        let mut tokens = Tokens::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |problem: String| TokensError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                problem,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [hash, name, role] = fields[..] else {
                return Err(bad(format!("{} fields instead of 3", fields.len())));
            };
            let hash = parse_hex32(hash).ok_or_else(|| {
                bad("the first field is not 64 hex digits (a SHA-256); make it with `printf %s TOKEN | sha256sum`".into())
            })?;
            let role: Role = role.parse().map_err(|e| bad(format!("{e}")))?;
            if tokens.by_hash.contains_key(&hash) {
                return Err(bad("the same token hash appears twice".into()));
            }
            tokens.by_hash.insert(
                hash,
                Entry {
                    name: name.to_string(),
                    role,
                },
            );
            // a name listed twice keeps its highest role
            let r = tokens.by_name.entry(name.to_string()).or_insert(role);
            *r = (*r).max(role);
        }
        Ok(tokens)
    }

    /// The credential whose hash matches `token` (trimmed).
    pub fn by_token(&self, token: &str) -> Option<&Entry> {
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        self.by_hash.get(&digest)
    }

    /// The role of `name` (a client certificate's common name).
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.by_name.get(name).copied()
    }

    /// How many credentials the file lists.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the file lists none.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_comments_and_hashes() {
        let text = format!(
            "# who may call\n{} alice viewer\n\n{}   bob operator # ops\n",
            token_hash_hex("t1"),
            token_hash_hex(" t2\n").to_uppercase()
        );
        let t = Tokens::parse(&text, Path::new("tokens")).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.by_token("t1").unwrap().role, Role::Viewer);
        assert_eq!(t.by_token("  t2 ").unwrap().name, "bob");
        assert!(t.by_token("t3").is_none());
        assert_eq!(t.role_of("bob"), Some(Role::Operator));
        assert_eq!(t.role_of("carol"), None);
    }

    #[test]
    fn errors_name_the_line() {
        let e = Tokens::parse("abc alice viewer\n", Path::new("f")).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let text = format!("\n{} alice superuser\n", token_hash_hex("x"));
        let e = Tokens::parse(&text, Path::new("f")).unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("superuser"),
            "{e}"
        );
    }
}
