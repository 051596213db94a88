//! The operations guide's log lines (ProgressTracker), word for word, since
//! operators grep for them.

use std::time::Duration;

/// Formats a count with thousands separators: 1,000,000.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `Starting parallel processing with N workers, M chunks`.
pub fn log_start(job: &str, workers: u32, chunks: u32) {
    tracing::info!(job = %job, "Starting parallel processing with {workers} workers, {chunks} chunks");
}

/// `Parallel Processing: X% complete (a/b chunks, R rows, Ts elapsed, ~Ts remaining)`.
pub fn log_progress(job: &str, done: u32, total: u32, rows: u64, elapsed: Duration) {
    let pct = if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    };
    let secs = elapsed.as_secs_f64();
    let remaining = if done == 0 {
        0.0
    } else {
        secs * (total - done) as f64 / done as f64
    };
    tracing::info!(
        job = %job,
        "Parallel Processing: {pct:.1}% complete ({done}/{total} chunks, {} rows, {secs:.1}s elapsed, ~{remaining:.1}s remaining)",
        thousands(rows)
    );
}

/// `Chunk N completed: R rows, S successful, F failed`.
pub fn log_chunk_completed(job: &str, chunk: u32, written: u64, rejected: u64) {
    tracing::info!(
        job = %job,
        "Chunk {chunk} completed: {} rows, {} successful, {} failed",
        thousands(written + rejected),
        thousands(written),
        thousands(rejected)
    );
}

/// `Chunk N failed with exception: …, will retry (i/max)`.
pub fn log_chunk_retry(job: &str, chunk: u32, error: &str, retry: u32, max: u32) {
    tracing::warn!(job = %job, "Chunk {chunk} failed with exception: {error}, will retry ({retry}/{max})");
}

/// `Chunk N failed with exception: …, not retrying (…)`.
pub fn log_chunk_gave_up(job: &str, chunk: u32, error: &str, why: &str) {
    tracing::error!(job = %job, "Chunk {chunk} failed with exception: {error}, not retrying ({why})");
}

/// `Parallel processing complete: R rows processed (S successful, F failed) in Ts`.
pub fn log_complete(job: &str, written: u64, rejected: u64, elapsed: Duration) {
    tracing::info!(
        job = %job,
        "Parallel processing complete: {} rows processed ({} successful, {} failed) in {:.1}s",
        thousands(written + rejected),
        thousands(written),
        thousands(rejected),
        elapsed.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(49_950), "49,950");
    }
}
