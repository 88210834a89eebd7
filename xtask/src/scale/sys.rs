//! CPU and memory of processes and of the machine, from `/proc`.

use anyhow::{Context, Result, bail};

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

/// `count` numbers from `skip` on in a whitespace-separated line.
fn numbers(line: &str, skip: usize, count: usize) -> Result<Vec<u64>> {
    let v = (line
        .split_whitespace()
        .skip(skip)
        .take(count)
        .map(str::parse))
    .collect::<Result<Vec<u64>, _>>()
    .with_context(|| format!("not numbers: {line:?}"))?;
    if v.len() != count {
        bail!("too few fields: {line:?}");
    }
    Ok(v)
}

/// utime + stime of a process (`self` or a pid), in clock ticks.
pub fn cpu_ticks(pid: &str) -> Result<u64> {
    let stat = read(&format!("/proc/{pid}/stat"))?;
    // After "pid (comm)" comes field 3; utime and stime are fields 14 and 15.
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    Ok(numbers(after_comm, 11, 2)?.iter().sum())
}

/// (busy, total) clock ticks of the whole machine (`cpu` line of /proc/stat).
pub fn machine_ticks() -> Result<(u64, u64)> {
    let stat = read("/proc/stat")?;
    let v = numbers(stat.lines().next().unwrap_or_default(), 1, 8)?;
    let total: u64 = v.iter().sum();
    Ok((total - v[3] - v[4], total))
}

/// Peak resident set size (VmHWM) of a process, in KiB.
pub fn peak_rss_kib(pid: &str) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// This process's soft limit of open files (the collector inherits it).
pub fn open_files_limit() -> Result<u64> {
    let limits = read("/proc/self/limits")?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"));
    let line = line.context("no open-files line in /proc/self/limits")?;
    Ok(numbers(line, 3, 1).unwrap_or(vec![u64::MAX])[0])
}

/// Resident set size (VmRSS) of a process, in KiB.
pub fn rss_kib(pid: &str) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: &str, field: &str) -> Result<u64> {
    let status = read(&format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field));
    let line = line.with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(numbers(line, 1, 1)?[0])
}

/// Peak and last resident set size of the collector over a phase, in MiB.
#[derive(Clone, Copy, Default)]
pub struct Rss {
    pub peak_mib: f64,
    pub end_mib: f64,
}

/// Follows a process's RSS through a phase: VmHWM reset at the start (by
/// writing 5 to `/proc/<pid>/clear_refs`, Linux 4.0 and later, when this
/// process may) and VmRSS sampled every [`RssWatch::EVERY`], so that the
/// peak is the phase's even where the reset is refused.
pub struct RssWatch {
    pid: String,
    reset: bool,
    stop: tokio_util::sync::CancellationToken,
    sampler: tokio::task::JoinHandle<u64>,
}

impl RssWatch {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(100);

    pub fn start(pid: &str) -> Self {
        let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let stop = tokio_util::sync::CancellationToken::new();
        let (p, s) = (pid.to_string(), stop.clone());
        let sampler = tokio::spawn(async move {
            let mut peak = 0;
            let mut tick = tokio::time::interval(Self::EVERY);
            while s.run_until_cancelled(tick.tick()).await.is_some() {
                peak = peak.max(rss_kib(&p).unwrap_or(0));
            }
            peak
        });
        Self {
            pid: pid.to_string(),
            reset,
            stop,
            sampler,
        }
    }

    pub async fn finish(self) -> Result<Rss> {
        let end = rss_kib(&self.pid)?;
        self.stop.cancel();
        let sampled = self.sampler.await.context("rss sampler")?;
        let hwm = if self.reset {
            peak_rss_kib(&self.pid)?
        } else {
            0
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        Ok(Rss {
            peak_mib: mib(sampled.max(hwm).max(end)),
            end_mib: mib(end),
        })
    }
}

/// CPU of the collector, of this process and of the machine over a phase.
pub struct Cpu {
    pid: String,
    at: (u64, u64, (u64, u64)),
}

/// CPU seconds of the collector and of the load generator, and the
/// machine's busy fraction, since [`Cpu::start`].
pub struct CpuUse {
    pub collector_s: f64,
    pub generator_s: f64,
    pub busy: f64,
}

impl Cpu {
    pub fn start(pid: &str) -> Result<Self> {
        let at = (cpu_ticks(pid)?, cpu_ticks("self")?, machine_ticks()?);
        Ok(Self {
            pid: pid.to_string(),
            at,
        })
    }

    pub fn since(&self) -> Result<CpuUse> {
        let (col, gen_, m) = (cpu_ticks(&self.pid)?, cpu_ticks("self")?, machine_ticks()?);
        // /proc counts in USER_HZ, 100 per second on Linux.
        let s = |a: u64, b: u64| a.saturating_sub(b) as f64 / 100.0;
        let busy =
            m.0.saturating_sub(self.at.2.0) as f64 / m.1.saturating_sub(self.at.2.1).max(1) as f64;
        Ok(CpuUse {
            collector_s: s(col, self.at.0),
            generator_s: s(gen_, self.at.1),
            busy,
        })
    }
}

/// Above this share of a core over a phase, the load generator is
/// saturated: its own queues, not the collector, set the latencies.
pub const GENERATOR_SATURATED_PCT: f64 = 80.0;

impl CpuUse {
    /// The load generator's CPU over a phase of `secs`, in % of one core.
    pub fn generator_pct(&self, secs: f64) -> f64 {
        100.0 * self.generator_s / secs.max(1e-9)
    }

    /// Collector, load generator and machine lines for a phase of `secs`.
    pub fn print(&self, secs: f64) {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let (col, gen_) = (self.collector_s, self.generator_s);
        let pc = |s: f64| 100.0 * s / secs.max(1e-9);
        println!(
            "    collector       CPU {col:.1} s ({:.0}% of a core)",
            pc(col)
        );
        println!(
            "    load generator  CPU {gen_:.1} s ({:.0}% of a core)",
            pc(gen_)
        );
        if pc(gen_) > GENERATOR_SATURATED_PCT {
            println!(
                "    WARNING: the load generator used more than {GENERATOR_SATURATED_PCT:.0}% of a \
                 core: this phase's latencies are partly its own (flagged in the RESULT lines)"
            );
        }
        let busy = 100.0 * self.busy;
        let load = read("/proc/loadavg").unwrap_or_default();
        let load = load.split_whitespace().next().unwrap_or("?");
        println!(
            "    machine         {busy:.0}% busy of {cores} cores (all processes), \
             load average {load}"
        );
    }
}
