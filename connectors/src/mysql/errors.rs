//! MySQL and MariaDB errors in Ferry's classes, by error number (and SQLSTATE
//! class where the number is not listed), never by message text.

use ferry_common::errors::{DbFailure, ErrorClass};
use sqlx::mysql::MySqlDatabaseError;

/// Error numbers that mean "try again": lock wait timeout, deadlock, too
/// many connections, server shutting down, connection killed, query
/// interrupted, network timeouts, statement time limit.
const TRANSIENT: &[u16] = &[
    1205, 1213, 1040, 1053, 1927, 1317, 1159, 1161, 3024, 1969, 2006, 2013,
];

/// Error numbers that mean "this row cannot land": NULL into NOT NULL,
/// duplicate key, out of range, truncated, bad date or number, too long,
/// foreign key, CHECK (MySQL 3819, MariaDB 4025), value out of range in an
/// expression, invalid JSON.
const DATA: &[u16] = &[
    1048, 1062, 1264, 1265, 1292, 1366, 1406, 1452, 3819, 4025, 1690, 1411, 3140, 4038, 1367, 1416,
];

/// The class of a MySQL error number (and SQLSTATE when the number is not listed).
pub fn classify_number(number: u16, sqlstate: Option<&str>) -> ErrorClass {
    if TRANSIENT.contains(&number) {
        return ErrorClass::Transient;
    }
    if DATA.contains(&number) {
        return ErrorClass::Data;
    }
    match sqlstate.map(|s| &s[..s.len().min(2)]) {
        Some("08") | Some("40") => ErrorClass::Transient,
        Some("22") | Some("23") => ErrorClass::Data,
        _ => ErrorClass::Permanent,
    }
}

/// Classifies an sqlx error from a MySQL connection: a server error by its
/// number, anything else (I/O, a closed connection, a pool timeout) as
/// transient, a bad URL or configuration as permanent.
pub fn classify(err: &sqlx::Error) -> DbFailure {
    match err {
        sqlx::Error::Database(db) => {
            if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
                let number = my.number();
                return DbFailure {
                    class: classify_number(number, my.code()),
                    sqlstate: Some(my.code().unwrap_or("HY000").to_string()),
                    message: format!("{} (MySQL error {number})", my.message()),
                };
            }
            DbFailure::permanent(db.message().to_string())
        }
        sqlx::Error::Configuration(e) => DbFailure::permanent(e.to_string()),
        sqlx::Error::Tls(e) => DbFailure::permanent(format!("TLS: {e}")),
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
    fn numbers_decide_the_class() {
        assert_eq!(classify_number(1213, Some("40001")), ErrorClass::Transient);
        assert_eq!(classify_number(1205, Some("HY000")), ErrorClass::Transient);
        assert_eq!(classify_number(4025, Some("23000")), ErrorClass::Data);
        assert_eq!(classify_number(1406, Some("22001")), ErrorClass::Data);
        assert_eq!(classify_number(1146, Some("42S02")), ErrorClass::Permanent);
        assert_eq!(classify_number(1064, Some("42000")), ErrorClass::Permanent);
        assert_eq!(classify_number(9999, Some("22007")), ErrorClass::Data);
    }
}
