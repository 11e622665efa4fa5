//! Latency percentiles and the server's memory, sampled from /proc while the load runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Request latencies of one phase.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The `p`-th percentile (nearest rank), 0 when empty.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort_unstable();
        match v.len() {
            0 => Duration::ZERO,
            n => v[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1],
        }
    }

    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(self.percentile(50.0)),
            ms(self.percentile(95.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(100.0))
        )
    }
}

/// Resident memory of a process, from /proc/PID/status (Linux), in KiB.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

pub struct Memory {
    /// Highest resident set sampled during the run.
    pub max_rss_kib: u64,
    /// The kernel's high-water mark since the server started (includes start-up and set-up).
    pub hwm_kib: u64,
}

/// Samples a process's RSS every 50 ms until stopped.
pub struct MemorySampler {
    pid: Option<u32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl MemorySampler {
    pub fn start(pid: Option<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = pid.map(|pid| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut max = 0;
                while !stop.load(Ordering::Relaxed) {
                    max = max.max(status_kib(pid, "VmRSS:").unwrap_or(0));
                    std::thread::sleep(Duration::from_millis(50));
                }
                max
            })
        });
        Self { pid, stop, thread }
    }

    pub fn stop(mut self) -> Option<Memory> {
        self.stop.store(true, Ordering::Relaxed);
        let max = self.thread.take()?.join().ok()?;
        Some(Memory {
            max_rss_kib: max,
            hwm_kib: self.pid.and_then(|p| status_kib(p, "VmHWM:")).unwrap_or(0),
        })
    }
}
