//! ENUM and SET labels exactly as the column holds them. MariaDB reports
//! column types (`SHOW COLUMNS`, `information_schema.COLUMNS`, `SHOW CREATE
//! TABLE`) in utf8mb3, so a label with a 4-byte character (an emoji) reads
//! as `?`. The labels themselves are stored right: a one-column temporary
//! copy of the column, given each label's index (ENUM) or bit (SET), hands
//! them back as utf8mb4 values.

use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};

use ferry_common::errors::DbFailure;

use super::errors::classify;
use super::session::exec;
use super::sql::quote_ident;

/// The temporary table the labels are read back through.
const LABELS: &str = "ferry_labels";

/// Whether a type is an ENUM or a SET, and how many labels its list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    /// `enum(…)`: a value is one label, stored as its 1-based index.
    Enum(usize),
    /// `set(…)`: a value is some labels, stored as a bit per label.
    Set(usize),
}

/// The labels of `enum('a','b')` / `set('a','b')` as MySQL spells the list
/// (each quoted, a quote doubled), with the text after the list; None for
/// any other type or a list that does not parse.
fn parse_list(db_type: &str) -> Option<(bool, Vec<String>, &str)> {
    let lower = db_type.to_ascii_lowercase();
    let (is_set, rest) = if lower.starts_with("enum(") {
        (false, &db_type[5..])
    } else if lower.starts_with("set(") {
        (true, &db_type[4..])
    } else {
        return None;
    };
    let mut labels = Vec::new();
    let mut chars = rest.char_indices().peekable();
    loop {
        if chars.next()?.1 != '\'' {
            return None;
        }
        let mut label = String::new();
        loop {
            let (_, c) = chars.next()?;
            if c == '\'' {
                if chars.peek().map(|(_, n)| *n) == Some('\'') {
                    chars.next();
                    label.push('\'');
                    continue;
                }
                break;
            }
            label.push(c);
        }
        labels.push(label);
        match chars.next()? {
            (_, ',') => continue,
            (at, ')') => return Some((is_set, labels, &rest[at + 1..])),
            _ => return None,
        }
    }
}

/// What kind of list `db_type` holds, when it may have lost labels (it
/// shows a `?`, which is how a 4-byte character reads in utf8mb3).
fn needs_reading(db_type: &str) -> Option<Listed> {
    let (is_set, labels, _) = parse_list(db_type)?;
    if !labels.iter().any(|l| l.contains('?')) {
        return None;
    }
    Some(if is_set {
        Listed::Set(labels.len())
    } else {
        Listed::Enum(labels.len())
    })
}

/// `db_type` with its list's labels replaced by `labels`, quoted as MySQL
/// takes them.
fn with_labels(db_type: &str, labels: &[String]) -> Option<String> {
    let (is_set, _, tail) = parse_list(db_type)?;
    let quoted: Vec<String> = labels
        .iter()
        .map(|l| format!("'{}'", l.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    let head = if is_set { "set" } else { "enum" };
    Some(format!("{head}({}){tail}", quoted.join(",")))
}

/// The exact type of `column` of the temporary table `table` when its
/// reported type `db_type` is an ENUM or SET whose labels may read as `?`;
/// None when the reported type is already exact.
pub async fn exact_type(
    conn: &mut MySqlConnection,
    table: &str,
    column: &str,
    db_type: &str,
) -> Result<Option<String>, DbFailure> {
    let Some(listed) = needs_reading(db_type) else {
        return Ok(None);
    };
    let (n, value): (usize, fn(usize) -> String) = match listed {
        Listed::Enum(n) => (n, |i| (i + 1).to_string()),
        Listed::Set(n) if n <= 64 => (n, |i| (1u128 << i).to_string()),
        Listed::Set(_) => return Ok(None),
    };
    let (l, c) = (quote_ident(LABELS), quote_ident(column));
    exec(conn, &format!("DROP TEMPORARY TABLE IF EXISTS {l}")).await?;
    exec(
        conn,
        &format!(
            "CREATE TEMPORARY TABLE {l} AS SELECT {c} FROM {} LIMIT 0",
            quote_ident(table)
        ),
    )
    .await?;
    let values: Vec<String> = (0..n).map(|i| format!("({})", value(i))).collect();
    let read = async {
        exec(
            conn,
            &format!("INSERT INTO {l} ({c}) VALUES {}", values.join(", ")),
        )
        .await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT CAST({c} AS CHAR CHARACTER SET utf8mb4) FROM {l} ORDER BY {c} + 0"
        )))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(&e))?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(|e| classify(&e)))
            .collect::<Result<Vec<String>, DbFailure>>()
    }
    .await;
    exec(conn, &format!("DROP TEMPORARY TABLE IF EXISTS {l}")).await?;
    let labels = read.map_err(|f| f.context("cannot read the ENUM/SET labels back"))?;
    if labels.len() != n {
        return Ok(None);
    }
    Ok(with_labels(db_type, &labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_doubled_quotes_and_keep_their_tail() {
        let (is_set, labels, tail) = parse_list("enum('a','it''s','?','')").expect("enum");
        assert!(!is_set);
        assert_eq!(labels, vec!["a", "it's", "?", ""]);
        assert_eq!(tail, "");
        let (is_set, labels, _) = parse_list("set('x,y','z')").expect("set");
        assert!(is_set);
        assert_eq!(labels, vec!["x,y", "z"]);
        assert_eq!(parse_list("varchar(10)"), None);
        assert_eq!(parse_list("enum('a'"), None);
    }

    #[test]
    fn only_lists_with_a_question_mark_are_read_back() {
        assert_eq!(needs_reading("enum('a','? big')"), Some(Listed::Enum(2)));
        assert_eq!(needs_reading("set('a','?','c')"), Some(Listed::Set(3)));
        assert_eq!(needs_reading("enum('a','b')"), None);
        assert_eq!(needs_reading("int(11)"), None);
    }

    #[test]
    fn labels_are_quoted_back_as_mysql_takes_them() {
        let labels = vec!["🦀 big".to_string(), "it's".to_string(), "a\\b".to_string()];
        assert_eq!(
            with_labels("enum('?','x','y')", &labels).as_deref(),
            Some("enum('🦀 big','it''s','a\\\\b')")
        );
    }
}
