//! Latency samples and errors of one phase, and the percentiles reported.

use std::collections::BTreeMap;

use tokio::time::Instant;
use transmissor_proto::identity::Ibge;

/// Per call: (start in s after t0, latency in ms); errors by call and status;
/// the transmissions committed, by target (municipality, rows).
#[derive(Default)]
pub struct Stats {
    pub calls: BTreeMap<&'static str, Vec<(f64, f64)>>,
    pub errors: BTreeMap<String, u64>,
    pub committed: BTreeMap<String, Vec<(Ibge, u64)>>,
}

impl Stats {
    pub fn ok(&mut self, call: &'static str, t0: Instant, t: Instant) {
        let sample = ((t - t0).as_secs_f64(), t.elapsed().as_secs_f64() * 1e3);
        self.calls.entry(call).or_default().push(sample);
    }
    pub fn error(&mut self, what: String) {
        *self.errors.entry(what).or_default() += 1;
    }
    pub fn commit(&mut self, target: &str, ibge: Ibge, rows: u64) {
        let v = self.committed.entry(target.to_string()).or_default();
        v.push((ibge, rows));
    }
    pub fn merge(&mut self, o: Stats) {
        for (k, v) in o.calls {
            self.calls.entry(k).or_default().extend(v);
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.committed {
            self.committed.entry(k).or_default().extend(v);
        }
    }
    /// Latencies (ms) of `call` whose start satisfies `when`.
    pub fn ms(&self, call: &str, when: impl Fn(f64) -> bool) -> Vec<f64> {
        let all = self.calls.get(call).map(Vec::as_slice).unwrap_or_default();
        all.iter().filter(|s| when(s.0)).map(|s| s.1).collect()
    }
    pub fn all(&self, call: &str) -> Vec<f64> {
        self.ms(call, |_| true)
    }
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
    pub fn committed_count(&self) -> usize {
        self.committed.values().map(Vec::len).sum()
    }
}

/// Nearest-rank percentile `p` (0..1); 0 when empty.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

/// The median (mean of the middle two of an even count); 0 when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One line of a latency table: count, p50, p99.
pub fn latency_line(label: &str, mut v: Vec<f64>) {
    let (len, p50, p99) = (v.len(), pct(&mut v, 0.5), pct(&mut v, 0.99));
    println!("    {label:<36} {len:>7} ok  p50 {p50:>7.1} ms  p99 {p99:>7.1} ms");
}

/// Prints the errors of a phase, one line per kind.
pub fn print_errors(stats: &Stats) {
    println!(
        "    errors                               {}",
        stats.error_count()
    );
    for (what, count) in &stats.errors {
        println!("      {count:>8}  {what}");
    }
}
