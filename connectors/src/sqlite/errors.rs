//! SQLite errors in Ferry's classes, by SQLite's (extended) result code,
//! never by message text.

use ferry_common::errors::{DbFailure, ErrorClass};

/// The class of an SQLite result code (its primary code is the low byte):
/// busy, locked, out of memory and interrupted are transient; constraint,
/// datatype mismatch and too big are data; anything else (read-only file,
/// missing table, syntax, corrupt file) is permanent.
pub fn classify_code(code: i64) -> ErrorClass {
    match code & 0xff {
        5 | 6 | 7 | 9 | 10 => ErrorClass::Transient,
        18..=20 => ErrorClass::Data,
        _ => ErrorClass::Permanent,
    }
}

/// The SQL-standard SQLSTATE closest to an SQLite result code, for the
/// rejects table (check 23514, NOT NULL 23502, unique and primary key 23505,
/// foreign key 23503, mismatch 22P02, too big 22001).
pub(crate) fn sqlstate(code: i64) -> &'static str {
    match code {
        275 => "23514",
        1299 => "23502",
        1555 | 2067 => "23505",
        787 => "23503",
        _ => match code & 0xff {
            19 => "23000",
            20 => "22P02",
            18 => "22001",
            5 | 6 => "55P03",
            _ => "HY000",
        },
    }
}

/// Classifies an sqlx error from an SQLite connection.
pub fn classify(err: &sqlx::Error) -> DbFailure {
    match err {
        sqlx::Error::Database(db) => {
            let code: i64 = db.code().and_then(|c| c.parse().ok()).unwrap_or(1);
            DbFailure {
                class: classify_code(code),
                sqlstate: Some(sqlstate(code).to_string()),
                message: format!("{} (SQLite error {code})", db.message()),
            }
        }
        sqlx::Error::Configuration(e) => DbFailure::permanent(e.to_string()),
        sqlx::Error::ColumnDecode { index, source } => DbFailure {
            class: ErrorClass::Data,
            sqlstate: Some("22000".into()),
            message: format!("cannot read column {index}: {source}"),
        },
        other => DbFailure::transient(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_decide_the_class() {
        assert_eq!(classify_code(5), ErrorClass::Transient);
        assert_eq!(classify_code(517), ErrorClass::Transient); // BUSY_SNAPSHOT
        assert_eq!(classify_code(275), ErrorClass::Data); // CONSTRAINT_CHECK
        assert_eq!(classify_code(2067), ErrorClass::Data); // CONSTRAINT_UNIQUE
        assert_eq!(classify_code(8), ErrorClass::Permanent); // READONLY
        assert_eq!(classify_code(1), ErrorClass::Permanent);
        assert_eq!(sqlstate(1299), "23502");
    }
}
