//! OpenLineage run events (spec 2-0-2) for one Ferry job, as JSON.

use serde_json::{json, Map, Value};

/// `producer` and every facet's `_producer`: this coordinator, by version.
pub const PRODUCER: &str = concat!("urn:ferry:coordinator:", env!("CARGO_PKG_VERSION"));
/// The RunEvent schema the events follow.
pub const RUN_EVENT_SCHEMA: &str =
    "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SQL_FACET: &str =
    "https://openlineage.io/spec/facets/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet";
const DATASOURCE_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet";
const OUTPUT_STATS_FACET: &str = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";
const ERROR_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";

/// The run state transitions Ferry reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The job started running (its plan is made).
    Start,
    /// The job SUCCEEDED.
    Complete,
    /// The job FAILED.
    Fail,
    /// The job was CANCELLED.
    Abort,
}

impl EventType {
    /// The name in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
            EventType::Abort => "ABORT",
        }
    }
}

/// A dataset: a namespace naming the database server and a name inside it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dataset {
    /// `postgres://host:port`, as the OpenLineage naming spec has it.
    pub namespace: String,
    /// `database.schema.table`.
    pub name: String,
    /// Ferry's name of the connection it was reached through.
    pub connection: String,
}

/// Everything one event says about a job.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// OpenLineage namespace of the job (`OPENLINEAGE_NAMESPACE`).
    pub namespace: String,
    /// Ferry's job id (the run).
    pub job_id: String,
    /// The job's name: stable across runs that copy into the same table.
    pub job_name: String,
    /// The source query.
    pub query: String,
    /// Tables the query reads.
    pub inputs: Vec<Dataset>,
    /// The target table.
    pub output: Dataset,
    /// Rows landed so far.
    pub rows_written: u64,
    /// Why the job failed or was cancelled.
    pub error: String,
}

fn facet(schema: &str, fields: Value) -> Value {
    let mut m = Map::new();
    m.insert("_producer".into(), Value::from(PRODUCER));
    m.insert("_schemaURL".into(), Value::from(schema));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m)
}

fn dataset(d: &Dataset) -> Value {
    json!({
        "namespace": d.namespace,
        "name": d.name,
        "facets": {
            "dataSource": facet(DATASOURCE_FACET, json!({"name": d.connection, "uri": d.namespace})),
        },
    })
}

/// The run id of a job: a UUID derived from the job id (MD5 name-based), so
/// every coordinator replica gives the same job the same run id.
pub fn run_id(job_id: &str) -> uuid::Uuid {
    use md5::{Digest, Md5};
    let digest: [u8; 16] = Md5::digest(job_id.as_bytes()).into();
    uuid::Builder::from_md5_bytes(digest).into_uuid()
}

/// The RunEvent of `kind` for a job, stamped `event_time` (RFC 3339).
pub fn run_event(kind: EventType, facts: &RunFacts, event_time: &str) -> Value {
    let mut run_facets = Map::new();
    if kind == EventType::Fail || (kind == EventType::Abort && !facts.error.is_empty()) {
        run_facets.insert(
            "errorMessage".into(),
            facet(
                ERROR_FACET,
                json!({"message": facts.error, "programmingLanguage": "SQL"}),
            ),
        );
    }
    let mut output = dataset(&facts.output);
    if kind != EventType::Start {
        output["outputFacets"] = json!({
            "outputStatistics": facet(OUTPUT_STATS_FACET, json!({"rowCount": facts.rows_written})),
        });
    }
    json!({
        "eventType": kind.as_str(),
        "eventTime": event_time,
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA,
        "run": {"runId": run_id(&facts.job_id).to_string(), "facets": run_facets},
        "job": {
            "namespace": facts.namespace,
            "name": facts.job_name,
            "facets": {"sql": facet(SQL_FACET, json!({"query": facts.query}))},
        },
        "inputs": facts.inputs.iter().map(dataset).collect::<Vec<_>>(),
        "outputs": [output],
    })
}

/// Unix milliseconds as RFC 3339 UTC (`2026-11-29T20:31:41.123Z`).
pub fn rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // days since 1970-01-01 to a civil date (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> RunFacts {
        let ds = |name: &str, conn: &str| Dataset {
            namespace: "postgres://127.0.0.1:5432".into(),
            name: name.into(),
            connection: conn.into(),
        };
        RunFacts {
            namespace: "ferry".into(),
            job_id: "j1".into(),
            job_name: "dst.public.items".into(),
            query: "select * from items".into(),
            inputs: vec![ds("src.public.items", "src")],
            output: ds("dst.public.items", "dst"),
            rows_written: 42,
            error: String::new(),
        }
    }

    #[test]
    fn complete_has_row_count_and_start_has_none() {
        let e = run_event(EventType::Complete, &facts(), "2026-01-01T00:00:00.000Z");
        assert_eq!(e["eventType"], "COMPLETE");
        assert_eq!(
            e["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"],
            42
        );
        assert_eq!(e["inputs"][0]["name"], "src.public.items");
        let s = run_event(EventType::Start, &facts(), "2026-01-01T00:00:00.000Z");
        assert!(s["outputs"][0].get("outputFacets").is_none());
        assert_eq!(s["run"]["runId"], e["run"]["runId"], "one run id per job");
    }

    #[test]
    fn run_ids_are_uuids_stable_per_job() {
        assert_eq!(run_id("j1"), run_id("j1"));
        assert_ne!(run_id("j1"), run_id("j2"));
        assert_eq!(run_id("j1").get_version_num(), 3);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_552_301_000), "2026-11-24T20:31:41.000Z");
    }
}
