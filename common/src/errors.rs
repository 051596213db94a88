//! The failure taxonomy: transient (retry with backoff), permanent (fail fast)
//! and data (a row the target refuses).

use crate::proto;

/// Class of a database failure, deciding what happens to the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Connection loss, timeouts, deadlock, serialization failure, too many
    /// connections, admin shutdown: the chunk is retried with backoff.
    Transient,
    /// Syntax, missing table or column, permission: the job fails at once.
    Permanent,
    /// A row violates a type or constraint.
    Data,
}

impl ErrorClass {
    /// The protocol's form of the class.
    pub fn to_proto(self) -> proto::ErrorClass {
        match self {
            ErrorClass::Transient => proto::ErrorClass::Transient,
            ErrorClass::Permanent => proto::ErrorClass::Permanent,
            ErrorClass::Data => proto::ErrorClass::Data,
        }
    }
}

/// Classifies a SQLSTATE code.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    match code {
        "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "58000" | "58030" => {
            ErrorClass::Transient
        }
        _ => match &code[..code.len().min(2)] {
            // connection exception, insufficient resources, system/internal errors
            "08" | "53" | "XX" | "40" => ErrorClass::Transient,
            // data exception, integrity constraint violation
            "22" | "23" => ErrorClass::Data,
            _ => ErrorClass::Permanent,
        },
    }
}

/// A database failure reduced to what Ferry reports: class, SQLSTATE and a
/// message that carries no connection secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFailure {
    /// Class.
    pub class: ErrorClass,
    /// SQLSTATE, when the server sent one.
    pub sqlstate: Option<String>,
    /// Message for people.
    pub message: String,
}

impl DbFailure {
    /// A permanent failure that is Ferry's own finding (no SQLSTATE).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            sqlstate: None,
            message: message.into(),
        }
    }

    /// A transient failure that is Ferry's own finding (no SQLSTATE).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Transient,
            sqlstate: None,
            message: message.into(),
        }
    }

    /// The same failure with `context` in front of its message.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Whether the database reported this SQLSTATE.
    pub fn is_sqlstate(&self, code: &str) -> bool {
        self.sqlstate.as_deref() == Some(code)
    }
}

impl std::error::Error for DbFailure {}

impl std::fmt::Display for DbFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Classifies a `tokio_postgres` error: a server error by its SQLSTATE,
/// anything else (I/O, closed connection, timeout) as transient.
pub fn classify_pg(err: &tokio_postgres::Error) -> DbFailure {
    if let Some(db) = err.as_db_error() {
        let code = db.code().code().to_string();
        let mut message = db.message().to_string();
        if let Some(detail) = db.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        return DbFailure {
            class: classify_sqlstate(&code),
            sqlstate: Some(code),
            message,
        };
    }
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    DbFailure {
        class: ErrorClass::Transient,
        sqlstate: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_architecture() {
        assert_eq!(classify_sqlstate("08006"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("40P01"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("53300"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("57P01"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("42601"), ErrorClass::Permanent);
        assert_eq!(classify_sqlstate("42P01"), ErrorClass::Permanent);
        assert_eq!(classify_sqlstate("42501"), ErrorClass::Permanent);
        assert_eq!(classify_sqlstate("23514"), ErrorClass::Data);
        assert_eq!(classify_sqlstate("22001"), ErrorClass::Data);
    }
}
