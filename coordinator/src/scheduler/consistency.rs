//! A job's consistency: whether its chunks read the source as of one
//! instant (`--consistency snapshot`, PostgreSQL sources) or each at its own
//! (`none`), what the plan line says of it, and what a job does when the
//! snapshot it reads in is lost (the coordinator holding it failed over).

use ferry_common::connections::ConnectionRegistry;
use ferry_common::proto::{Consistency, JobRecord, JobSpec, WriteMode};
use ferry_connectors::kind::DbKind;

use crate::error::{FieldError, Reason};

/// The key column type of a job split on `ctid` block ranges.
const CTID_TYPE: &str = "tid";

/// Resolves the spec's consistency against its source's kind: unset means
/// SNAPSHOT for PostgreSQL and NONE for MySQL and SQLite; SNAPSHOT asked of
/// a source that cannot export one is an error naming the fix.
pub(super) fn resolve(spec: &JobSpec, conns: &ConnectionRegistry) -> Result<i32, FieldError> {
    let kind = conns
        .url(&spec.source)
        .ok()
        .and_then(|url| DbKind::of_url(&spec.source, url).ok());
    let postgres = kind == Some(DbKind::Postgres);
    match Consistency::try_from(spec.consistency) {
        Ok(Consistency::Unspecified) if postgres => Ok(Consistency::Snapshot as i32),
        Ok(Consistency::Unspecified) | Ok(Consistency::None) => Ok(Consistency::None as i32),
        Ok(Consistency::Snapshot) if postgres => Ok(Consistency::Snapshot as i32),
        Ok(Consistency::Snapshot) => Err(FieldError::new(
            "spec.consistency",
            Reason::InvalidValue,
            format!(
                "--consistency snapshot needs a PostgreSQL source, and connection '{}' is {}: pass --consistency none (each chunk then reads the source as it is when the chunk starts)",
                spec.source,
                kind.map_or("not PostgreSQL", DbKind::name)
            ),
        )),
        Err(_) => Err(FieldError::new(
            "spec.consistency",
            Reason::InvalidValue,
            format!(
                "unknown consistency {}: pass --consistency snapshot or none",
                spec.consistency
            ),
        )),
    }
}

/// Whether the job reads its source in one exported snapshot.
pub(crate) fn wants_snapshot(record: &JobRecord) -> bool {
    record
        .spec
        .as_ref()
        .is_some_and(|s| s.consistency == Consistency::Snapshot as i32)
}

/// What the plan line says of a job's consistency.
pub fn plan_note(consistency: i32) -> &'static str {
    if consistency == Consistency::Snapshot as i32 {
        "consistency snapshot: every chunk reads the source as of one instant"
    } else {
        "consistency none: chunks read the source at different moments, the copy is not consistent across chunks"
    }
}

/// Whether the job is split on `ctid` block ranges (its key column is the
/// row's physical position, type `tid`).
pub fn split_on_ctid(record: &JobRecord) -> bool {
    record.key.iter().any(|k| k.r#type == CTID_TYPE)
}

/// What a running job does once the snapshot its chunks read in is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WhenLost {
    /// Read on in a new snapshot; the job is marked not consistent.
    Continue,
    /// Empty the target and copy every chunk again in a new snapshot.
    StartOver,
    /// Fail the job with this message.
    Fail(String),
}

/// Decides what a job does when its snapshot is lost: a job split on a key
/// reads on (a row keeps its key, so no row lands twice or goes missing,
/// but chunks see two instants); one split on `ctid` starts over when its
/// mode empties the target anyway (truncate, replace) and its target is
/// PostgreSQL, and otherwise fails, saying why and what to do.
pub(crate) fn when_lost(record: &JobRecord, target_is_postgres: bool) -> WhenLost {
    if !split_on_ctid(record) {
        return WhenLost::Continue;
    }
    let mode = record
        .spec
        .as_ref()
        .and_then(|s| WriteMode::try_from(s.mode).ok())
        .unwrap_or(WriteMode::Append);
    let restartable = matches!(mode, WriteMode::Truncate | WriteMode::Replace);
    if restartable && target_is_postgres {
        return WhenLost::StartOver;
    }
    let why = "the job is split on ctid block ranges and its source snapshot was lost (the coordinator holding it stopped); rows move between blocks when they are updated, so chunks read in another snapshot could copy a row twice or miss it";
    WhenLost::Fail(if restartable {
        format!("{why}; a job of this mode starts over only into a PostgreSQL target: submit it again, or with --consistency none")
    } else {
        format!("{why}: submit it again with --mode truncate (it then starts over by itself), or with --consistency none")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::proto::KeyColumn;

    fn conns() -> ConnectionRegistry {
        ConnectionRegistry::from_pairs([
            ("pg".to_string(), "postgres://a".to_string()),
            ("my".to_string(), "mysql://b".to_string()),
            ("lite".to_string(), "sqlite:/tmp/x.db".to_string()),
        ])
    }

    fn spec(source: &str, c: Consistency) -> JobSpec {
        JobSpec {
            source: source.into(),
            consistency: c as i32,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_follow_the_source() {
        let c = conns();
        let snap = Consistency::Snapshot as i32;
        let none = Consistency::None as i32;
        assert_eq!(
            resolve(&spec("pg", Consistency::Unspecified), &c).ok(),
            Some(snap)
        );
        assert_eq!(resolve(&spec("pg", Consistency::None), &c).ok(), Some(none));
        assert_eq!(
            resolve(&spec("my", Consistency::Unspecified), &c).ok(),
            Some(none)
        );
        assert_eq!(
            resolve(&spec("lite", Consistency::None), &c).ok(),
            Some(none)
        );
        let e = resolve(&spec("my", Consistency::Snapshot), &c).unwrap_err();
        assert_eq!(e.field, "spec.consistency");
        assert!(
            e.message.contains("MySQL") && e.message.contains("--consistency none"),
            "{e}"
        );
        assert!(resolve(&spec("lite", Consistency::Snapshot), &c).is_err());
    }

    fn record(key_type: &str, mode: WriteMode) -> JobRecord {
        JobRecord {
            spec: Some(JobSpec {
                mode: mode as i32,
                ..Default::default()
            }),
            key: vec![KeyColumn {
                name: "k".into(),
                r#type: key_type.into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn lost_snapshots_continue_start_over_or_fail() {
        assert_eq!(
            when_lost(&record("bigint", WriteMode::Append), true),
            WhenLost::Continue
        );
        assert_eq!(
            when_lost(&record("tid", WriteMode::Truncate), true),
            WhenLost::StartOver
        );
        assert_eq!(
            when_lost(&record("tid", WriteMode::Replace), true),
            WhenLost::StartOver
        );
        let WhenLost::Fail(m) = when_lost(&record("tid", WriteMode::Append), true) else {
            panic!("an append job split on ctid must fail");
        };
        assert!(
            m.contains("rows move between blocks")
                && m.contains("--mode truncate")
                && m.contains("--consistency none"),
            "{m}"
        );
        assert!(matches!(
            when_lost(&record("tid", WriteMode::Truncate), false),
            WhenLost::Fail(_)
        ));
        assert!(split_on_ctid(&record("tid", WriteMode::Append)));
        assert!(!split_on_ctid(&record("text", WriteMode::Append)));
    }
}
