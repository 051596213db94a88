//! CPU time and memory of this process and of others, from getrusage and /proc.

use std::time::Duration;

/// CPU time (user + system) and peak RSS of this process, all threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu: Duration,
    pub user: Duration,
    pub sys: Duration,
    pub max_rss_kib: u64,
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64)
}

/// getrusage(RUSAGE_SELF).
pub fn self_usage() -> Usage {
    // SAFETY: getrusage writes into a zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Usage::default();
    }
    let user = tv(ru.ru_utime);
    let sys = tv(ru.ru_stime);
    Usage {
        cpu: user + sys,
        user,
        sys,
        max_rss_kib: ru.ru_maxrss as u64,
    }
}

/// CPU time (user + system) of another process, from /proc/PID/stat (clock-tick resolution).
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces: fields start after the last ')'
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros((utime + stime) * 1_000_000 / hz))
}

/// Peak RSS of another process in KiB (VmHWM), from /proc/PID/status.
pub fn proc_peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// CPU time all processes of the machine spent busy (not idle or waiting
/// on I/O), from the first line of /proc/stat: to tell how much of a run's
/// machine time went to processes other than the benchmark's.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …
    let busy: u64 = f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(busy * 1_000_000 / hz))
}

/// Resident set size of this process in KiB (VmRSS), from /proc/self/status.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// RSS in KiB after handing freed heap back to the kernel (mimalloc's
/// `mi_collect`, glibc's `malloc_trim` for what C code allocated), so that
/// memory the allocators keep but nothing uses is not counted.
pub fn trimmed_rss_kib() -> u64 {
    // SAFETY: neither call has preconditions; they only release free memory.
    unsafe {
        ferry_common::allocator::libmimalloc_sys::mi_collect(true);
        libc::malloc_trim(0);
    }
    rss_kib()
}
