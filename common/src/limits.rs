//! Input limits: how large a request and the fields of a job spec may be.
//! Each bound is far above any honest use and low enough that a hostile or
//! broken client cannot make the coordinator hold, store in etcd or send to
//! every worker something huge.

/// Largest JobService request (a job spec is a few KiB; the query dominates).
pub const MAX_JOB_REQUEST_BYTES: usize = 1024 * 1024;
/// Largest WorkerService request (a heartbeat lists at most 256 held chunks).
pub const MAX_WORKER_REQUEST_BYTES: usize = 1024 * 1024;
/// Largest gRPC health or reflection request.
pub const MAX_PROBE_REQUEST_BYTES: usize = 64 * 1024;
/// Largest HTTP/2 header list (metadata: the bearer token, tracing headers).
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Longest job query, in bytes (it is stored with the job and planned).
pub const MAX_QUERY_BYTES: usize = 256 * 1024;
/// Longest target table name as written (`schema.table`, quotes included).
pub const MAX_TABLE_NAME_BYTES: usize = 300;
/// Longest identifier (PostgreSQL truncates names at 63 bytes).
pub const MAX_IDENTIFIER_BYTES: usize = 63;
/// Most columns a job may name (PostgreSQL allows 1,600 per table).
pub const MAX_COLUMNS: usize = 1600;
/// Longest connection name.
pub const MAX_CONNECTION_NAME_BYTES: usize = 63;
/// Largest chunk: a billion rows (a larger chunk cannot be retried in any
/// reasonable time, and larger values are typing mistakes).
pub const MAX_CHUNK_SIZE: u64 = 1_000_000_000;
/// Most chunks of one job in flight at once.
pub const MAX_MAX_WORKERS: u32 = 10_000;
/// Most retries of one chunk.
pub const MAX_RETRIES: u32 = 1_000;
/// Longest retry backoff: one day, in milliseconds.
pub const MAX_RETRY_DELAY_MS: u64 = 24 * 3600 * 1000;
/// Longest idempotency key.
pub const MAX_REQUEST_ID_BYTES: usize = 256;
/// Longest failure message a worker may report (longer ones are cut).
pub const MAX_FAILURE_MESSAGE_BYTES: usize = 8 * 1024;
/// Longest host name a worker may report.
pub const MAX_HOSTNAME_BYTES: usize = 253;
/// Most chunk slots a worker may ask for at once.
pub const MAX_SLOTS: u32 = 1024;

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        let t = truncate("ééé", 3);
        assert!(t.starts_with('é') && t.contains("bytes cut"), "{t}");
    }
}
