//! What the machine and this process report: disk use, peak memory, RAM,
//! load average.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Allocated bytes (st_blocks * 512) of every file under `dir`: what the
/// engine really occupies, preallocation included, holes excluded.
pub fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    total += disk_bytes(&e.path());
                } else {
                    total += m.blocks() * 512;
                }
            }
        }
    }
    total
}

/// The `key:  N kB` line of a /proc file, in bytes.
fn proc_kb(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Peak resident set of this process (VmHWM), in bytes.
pub fn peak_rss() -> u64 {
    proc_kb("/proc/self/status", "VmHWM").unwrap_or(0)
}

/// The machine's RAM (MemTotal), in bytes (1 GiB if unknown): what the
/// engines whose docs size their cache as a share of memory are given.
pub fn mem_total() -> u64 {
    proc_kb("/proc/meminfo", "MemTotal").unwrap_or(1 << 30)
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages.
pub fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
