//! Latency percentiles, and the server's memory and CPU time, read from /proc while the load runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// CPU time (user + system, every thread) a process has used so far, in seconds. /proc counts it
/// in USER_HZ ticks, which Linux fixes at 100 for user space whatever the kernel's own tick.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU time the whole machine has spent busy (every core, every process), in seconds: the
/// `cpu` line of /proc/stat, in USER_HZ ticks, without idle and I/O wait.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user already)
    let all: u64 = ticks.iter().take(8).sum();
    let waiting = ticks.get(3)? + ticks.get(4)?;
    Some((all - waiting) as f64 / 100.0)
}

/// Where the machine's cores went during one phase, in cores on average: the server, the
/// database and this load generator share them, so a phase that leaves the database less of
/// them than another is measured against it on unequal terms.
#[derive(Debug, Clone, Copy)]
pub struct MachineUse {
    /// Every process together.
    pub busy_cores: f64,
    /// This load generator (its requests, or the ceiling's writers).
    pub own_cores: f64,
}

impl MachineUse {
    pub fn summary(&self) -> String {
        format!(
            "{:.2} cores busy, {:.2} of them this load generator",
            self.busy_cores, self.own_cores
        )
    }
}

/// Reads the machine's and this process's CPU time at both ends of a phase.
pub struct MachineSampler {
    started: Instant,
    busy: Option<f64>,
    own: Option<f64>,
}

impl MachineSampler {
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            busy: machine_busy_seconds(),
            own: cpu_seconds(std::process::id()),
        }
    }

    /// `None` where /proc cannot be read (not Linux).
    pub fn stop(self) -> Option<MachineUse> {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        Some(MachineUse {
            busy_cores: (machine_busy_seconds()? - self.busy?) / wall,
            own_cores: (cpu_seconds(std::process::id())? - self.own?) / wall,
        })
    }
}

/// What the server used during one phase.
pub struct ServerUse {
    /// Highest resident set sampled during the phase.
    pub max_rss_kib: u64,
    /// The kernel's high-water mark since the server started (includes start-up and set-up).
    pub hwm_kib: u64,
    /// CPU time the server spent during the phase, in seconds (all its threads).
    pub cpu_s: f64,
}

/// Samples a process's RSS every 50 ms until stopped, and its CPU time at both ends.
pub struct ServerSampler {
    pid: Option<u32>,
    cpu_at_start: f64,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl ServerSampler {
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
        let cpu_at_start = pid.and_then(cpu_seconds).unwrap_or(0.0);
        Self {
            pid,
            cpu_at_start,
            stop,
            thread,
        }
    }

    pub fn stop(mut self) -> Option<ServerUse> {
        let cpu_at_stop = self.pid.and_then(cpu_seconds).unwrap_or(0.0);
        self.stop.store(true, Ordering::Relaxed);
        let max = self.thread.take()?.join().ok()?;
        Some(ServerUse {
            max_rss_kib: max,
            hwm_kib: self.pid.and_then(|p| status_kib(p, "VmHWM:")).unwrap_or(0),
            cpu_s: cpu_at_stop - self.cpu_at_start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_cpu_time() {
        let before = cpu_seconds(std::process::id()).expect("own /proc stat");
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = cpu_seconds(std::process::id()).expect("own /proc stat");
        assert!(after - before >= 0.1, "spun 0.3 s, counted {} s", after - before);
    }

    #[test]
    fn reads_the_machines_cpu_time() {
        let sampler = MachineSampler::start();
        let mut x = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let used = sampler.stop().expect("/proc/stat");
        // One core spun the whole time: this process, and so the machine, were busy.
        assert!(used.own_cores >= 0.3, "{used:?}");
        assert!(used.busy_cores >= used.own_cores * 0.9, "{used:?}");
        let cores = std::thread::available_parallelism().map_or(64, |n| n.get()) as f64;
        assert!(used.busy_cores <= cores + 0.5, "{used:?}");
    }
}
