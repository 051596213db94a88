//! `--output json`: the protobuf JSON mapping of the API's messages (snake_case
//! field names, enums by name, 64-bit integers as strings, every field
//! present), one object per line, for scripts (Argo, Dagster, jq).

use serde::Serialize;

/// How a client verb prints its result.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line (the protobuf JSON mapping).
    Json,
}

/// The `--output` flag.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct OutputArg {
    /// Output format: text for people, json for scripts (one object per line).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

impl OutputArg {
    /// Whether JSON was asked for.
    pub fn json(&self) -> bool {
        self.output == Format::Json
    }
}

/// Prints `message` as one line of JSON on stdout.
pub fn print_json<T: Serialize>(message: &T) {
    match serde_json::to_string(message) {
        Ok(line) => println!("{line}"),
        // pbjson's serializers fail only on non-finite floats, which the API never sends
        Err(e) => eprintln!("error: cannot encode the response as JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use ferry_common::proto::{Job, JobEvent, JobSpec, JobState};

    #[test]
    fn uses_proto_field_names_and_enum_names() {
        let ev = JobEvent {
            job: Some(Job {
                job_id: "j1".into(),
                state: JobState::Succeeded as i32,
                rows_written: 150_000,
                spec: Some(JobSpec {
                    chunk_size: Some(10),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sequence: 3,
        };
        let v: serde_json::Value = serde_json::to_value(&ev).expect("json");
        assert_eq!(v["sequence"], "3");
        assert_eq!(v["job"]["job_id"], "j1");
        assert_eq!(v["job"]["state"], "JOB_STATE_SUCCEEDED");
        assert_eq!(v["job"]["rows_written"], "150000");
        assert_eq!(v["job"]["rows_rejected"], "0", "defaults are present");
        assert_eq!(v["job"]["spec"]["chunk_size"], "10");
    }
}
