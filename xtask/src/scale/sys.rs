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
    let status = read(&format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"));
    Ok(numbers(line.context("no VmHWM in /proc/<pid>/status")?, 1, 1)?[0])
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

impl CpuUse {
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
        let busy = 100.0 * self.busy;
        let load = read("/proc/loadavg").unwrap_or_default();
        let load = load.split_whitespace().next().unwrap_or("?");
        println!(
            "    machine         {busy:.0}% busy of {cores} cores (all processes), \
             load average {load}"
        );
    }
}
