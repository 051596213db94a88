//! The process collector: CPU time, memory, threads, open files and start
//! time of this process, read from `/proc/self` when scraped.

use std::sync::OnceLock;

use opentelemetry::metrics::Meter;

/// What `/proc/self/stat` says about this process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    threads: i64,
    virtual_bytes: i64,
    resident_bytes: i64,
    start_time_seconds: f64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> i64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as i64
    } else {
        4096
    }
}

/// Seconds since the epoch at which the machine booted (`btime` of `/proc/stat`).
fn boot_time() -> f64 {
    static BOOT: OnceLock<f64> = OnceLock::new();
    *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    })
}

/// Parses `/proc/self/stat` (fields after the command name, which may hold spaces).
fn parse_stat(text: &str, ticks: f64, page: i64, boot: f64) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field N is f[N - 3]
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    Some(Stat {
        cpu_seconds: (num(14)? + num(15)?) / ticks,
        threads: num(20)? as i64,
        start_time_seconds: boot + num(22)? / ticks,
        virtual_bytes: num(23)? as i64,
        resident_bytes: num(24)? as i64 * page,
    })
}

fn read_stat() -> Stat {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s, clock_ticks(), page_size(), boot_time()))
        .unwrap_or_default()
}

fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as i64)
        .unwrap_or(0)
}

/// Registers the process collector's instruments.
pub fn register(meter: &Meter) {
    meter
        .f64_observable_counter("ferry_process_cpu_seconds")
        .with_unit("s")
        .with_description("CPU time (user and system) this process has used")
        .with_callback(|o| o.observe(read_stat().cpu_seconds, &[]))
        .build();
    meter
        .i64_observable_gauge("ferry_process_resident_memory_bytes")
        .with_unit("By")
        .with_description("Resident memory of this process")
        .with_callback(|o| o.observe(read_stat().resident_bytes, &[]))
        .build();
    meter
        .i64_observable_gauge("ferry_process_virtual_memory_bytes")
        .with_unit("By")
        .with_description("Virtual memory of this process")
        .with_callback(|o| o.observe(read_stat().virtual_bytes, &[]))
        .build();
    meter
        .i64_observable_gauge("ferry_process_threads")
        .with_description("Threads of this process")
        .with_callback(|o| o.observe(read_stat().threads, &[]))
        .build();
    meter
        .i64_observable_gauge("ferry_process_open_fds")
        .with_description("Open file descriptors of this process")
        .with_callback(|o| o.observe(open_fds(), &[]))
        .build();
    meter
        .f64_observable_gauge("ferry_process_start_time_seconds")
        .with_unit("s")
        .with_description("Start time of this process in seconds since the Unix epoch")
        .with_callback(|o| o.observe(read_stat().start_time_seconds, &[]))
        .build();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_command_has_spaces() {
        let line = "4242 (ferry (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 2048 18446744073709551615";
        let s = parse_stat(line, 100.0, 4096, 1_000_000.0).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_time_seconds, 1_000_010.0);
        assert_eq!(s.virtual_bytes, 123_456_789);
        assert_eq!(s.resident_bytes, 2048 * 4096);
        assert!(parse_stat("garbage", 100.0, 4096, 0.0).is_none());
    }

    #[test]
    fn reads_this_process() {
        let s = read_stat();
        assert!(s.resident_bytes > 0 && s.threads > 0, "{s:?}");
        assert!(open_fds() > 0);
    }
}
