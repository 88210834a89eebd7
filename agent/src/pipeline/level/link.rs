//! The link's speed as the uploads see it: compressed bytes of successful
//! `PutBatch` calls over the time at least one was in flight (so several
//! calls in flight are not counted twice, and a starved uploader does not
//! look like a slow link), folded into an EWMA at least every half second
//! of busy time. A sample is taken when the calls in flight have all ended,
//! or, while they go on, once twice as many calls completed as were in
//! flight at once: calls sharing the link complete together, so the first
//! completions of a busy spell would otherwise count the time of calls
//! still running without their bytes (measured: a third of a 20 Mbit/s
//! link). One meter per process, like the link itself ([`global`]): the
//! uploaders feed it and the compressor threads read it, and the daemon
//! keeps it across runs; the estimate is also saved in
//! `<state_dir>/link.json`, so a run started by cron begins from it.
//!
//! A sample taken while a cap was in force and close to it says only that
//! the link is at least that fast: it can raise the estimate, never lower
//! it (otherwise lifting a cap would leave the capped rate behind). The
//! estimate used is the measured one capped by the limit in force now.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::pipeline::bandwidth::LinkCap;

/// Busy time gathered into one sample.
const SAMPLE_BUSY: Duration = Duration::from_millis(500);
/// Weight of the newest sample.
const ALPHA: f64 = 0.3;
/// A sample at or above this fraction of the cap in force is cap-bound.
const CAP_BOUND: f64 = 0.9;
/// The saved estimate is rewritten at most this often.
const SAVE_EVERY: Duration = Duration::from_secs(5);
const FILE: &str = "link.json";

/// Where the link figure used for a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSource {
    /// Measured uploads (no cap, or a cap above the measurement).
    Measured,
    /// The cap in force, below the measurement.
    Cap,
    /// The cap in force; nothing measured yet.
    CapOnly,
}

impl LinkSource {
    pub fn name(self) -> &'static str {
        match self {
            Self::Measured => "measured",
            Self::Cap => "cap below measured",
            Self::CapOnly => "cap (nothing measured yet)",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    in_flight: u32,
    busy_since: Option<Instant>,
    busy: Duration,
    bytes: u64,
    /// Completions in the current sample; most calls in flight at once in
    /// the current busy spell.
    completions: u32,
    peak_in_flight: u32,
    estimate: Option<f64>,
    samples: u64,
    last_saved: Option<Instant>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    bytes_per_s: f64,
    samples: u64,
    updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Default)]
pub struct LinkMeter {
    state: Mutex<State>,
    cap: Mutex<Option<Arc<LinkCap>>>,
    file: Mutex<Option<PathBuf>>,
    /// The level last chosen by any job (0: none yet).
    level: AtomicI32,
}

/// The process's meter.
pub fn global() -> &'static LinkMeter {
    static METER: OnceLock<LinkMeter> = OnceLock::new();
    METER.get_or_init(LinkMeter::default)
}

/// The estimate after `sample` bytes/s: an EWMA, except that a cap-bound
/// sample only raises it.
pub fn fold(estimate: Option<f64>, sample: f64, cap: Option<f64>) -> f64 {
    if cap.is_some_and(|c| sample >= CAP_BOUND * c) {
        return estimate.map_or(sample, |e| e.max(sample));
    }
    estimate.map_or(sample, |e| e + ALPHA * (sample - e))
}

/// The link figure for a decision: the measurement capped by the limit in
/// force.
pub fn effective(measured: Option<f64>, cap: Option<f64>) -> Option<(f64, LinkSource)> {
    match (measured, cap) {
        (Some(m), Some(c)) if c < m => Some((c, LinkSource::Cap)),
        (Some(m), _) => Some((m, LinkSource::Measured)),
        (None, Some(c)) => Some((c, LinkSource::CapOnly)),
        (None, None) => None,
    }
}

impl LinkMeter {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Uses `cap` from now on and `<state_dir>/link.json` to keep the
    /// estimate; loads the saved one if this process has none.
    pub fn attach(&self, cap: Arc<LinkCap>, state_dir: &Path) {
        *self.cap.lock().unwrap_or_else(|p| p.into_inner()) = Some(cap);
        let path = state_dir.join(FILE);
        let saved = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
            .filter(|s| s.bytes_per_s.is_finite() && s.bytes_per_s > 0.0);
        {
            let mut st = self.lock();
            if st.estimate.is_none()
                && let Some(s) = &saved
            {
                st.estimate = Some(s.bytes_per_s);
                tracing::info!(link_bytes_per_s = s.bytes_per_s as u64, measured_at = %s.updated_at,
                    "link speed from earlier uploads");
            }
        }
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
    }

    fn cap_bytes_per_s(&self) -> Option<f64> {
        let cap = self.cap.lock().unwrap_or_else(|p| p.into_inner()).clone();
        cap.and_then(|c| c.peek().bytes_per_s()).map(|b| b as f64)
    }

    /// A `PutBatch` call starts; finish the timer when it succeeded.
    pub fn begin(&'static self) -> PutTimer {
        self.start_at(Instant::now());
        PutTimer {
            meter: self,
            bytes: None,
        }
    }

    fn start_at(&self, now: Instant) {
        let mut st = self.lock();
        if st.in_flight == 0 {
            st.busy_since = Some(now);
            st.peak_in_flight = 0;
        }
        st.in_flight += 1;
        st.peak_in_flight = st.peak_in_flight.max(st.in_flight);
    }

    fn end_at(&self, now: Instant, bytes: Option<u64>) {
        let cap = self.cap_bytes_per_s();
        let mut st = self.lock();
        st.bytes += bytes.unwrap_or(0);
        st.completions += u32::from(bytes.is_some());
        st.in_flight = st.in_flight.saturating_sub(1);
        if st.in_flight == 0
            && let Some(since) = st.busy_since.take()
        {
            st.busy += now - since;
        }
        let busy = st.busy + st.busy_since.map_or(Duration::ZERO, |s| now - s);
        let settled = st.in_flight == 0 || st.completions >= 2 * st.peak_in_flight;
        if busy < SAMPLE_BUSY || st.bytes == 0 || !settled {
            return;
        }
        let sample = st.bytes as f64 / busy.as_secs_f64();
        st.estimate = Some(fold(st.estimate, sample, cap));
        st.samples += 1;
        st.bytes = 0;
        st.completions = 0;
        st.busy = Duration::ZERO;
        if st.busy_since.is_some() {
            st.busy_since = Some(now);
        }
        tracing::debug!(
            sample_bytes_per_s = sample as u64,
            link_bytes_per_s = st.estimate.unwrap_or(0.0) as u64,
            cap_bytes_per_s = cap.map(|c| c as u64),
            "link sample"
        );
        if st.last_saved.is_none_or(|t| now - t >= SAVE_EVERY) {
            st.last_saved = Some(now);
            let saved = Saved {
                bytes_per_s: st.estimate.unwrap_or(sample),
                samples: st.samples,
                updated_at: chrono::Utc::now(),
            };
            drop(st);
            self.save(&saved);
        }
    }

    fn save(&self, saved: &Saved) {
        let Some(path) = self.file.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return;
        };
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(saved)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), error = %e, "cannot save the link estimate");
        }
    }

    /// The measured estimate (bytes/s), if any.
    pub fn measured(&self) -> Option<f64> {
        self.lock().estimate
    }

    /// The figure a level decision uses now (see [`effective`]).
    pub fn link(&self) -> Option<(f64, LinkSource)> {
        effective(self.measured(), self.cap_bytes_per_s())
    }

    pub(crate) fn set_level(&self, level: i32) {
        self.level.store(level, Ordering::Relaxed);
    }

    /// The level last chosen, if any.
    pub fn level(&self) -> Option<i32> {
        Some(self.level.load(Ordering::Relaxed)).filter(|l| *l != 0)
    }
}

/// One `PutBatch` attempt in flight; dropped without [`PutTimer::finish`]
/// it counts no bytes.
pub struct PutTimer {
    meter: &'static LinkMeter,
    bytes: Option<u64>,
}

impl PutTimer {
    /// The call succeeded with `bytes` of batch data.
    pub fn finish(mut self, bytes: usize) {
        self.bytes = Some(bytes as u64);
    }
}

impl Drop for PutTimer {
    fn drop(&mut self) {
        self.meter.end_at(Instant::now(), self.bytes.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_fold_into_an_ewma() {
        let e = fold(None, 1000.0, None);
        assert_eq!(e, 1000.0);
        let e = fold(Some(e), 2000.0, None);
        assert!((e - 1300.0).abs() < 1e-9);
    }

    #[test]
    fn a_cap_bound_sample_only_raises_the_estimate() {
        // Measured 10 MB/s; a 2 MB/s cap comes into force and the uploads
        // run at it: the link is not slower for that.
        assert_eq!(fold(Some(10e6), 1.95e6, Some(2e6)), 10e6);
        // Nothing measured before: the capped rate is a lower bound.
        assert_eq!(fold(None, 1.95e6, Some(2e6)), 1.95e6);
        // Well under the cap: a real measurement.
        let e = fold(Some(10e6), 1e6, Some(2e6));
        assert!(e < 10e6);
    }

    #[test]
    fn the_decision_uses_the_measurement_capped_by_the_limit() {
        assert_eq!(effective(None, None), None);
        assert_eq!(
            effective(Some(5e6), None),
            Some((5e6, LinkSource::Measured))
        );
        assert_eq!(
            effective(Some(5e6), Some(1e6)),
            Some((1e6, LinkSource::Cap))
        );
        assert_eq!(
            effective(Some(5e5), Some(1e6)),
            Some((5e5, LinkSource::Measured))
        );
        assert_eq!(effective(None, Some(1e6)), Some((1e6, LinkSource::CapOnly)));
    }

    #[test]
    fn busy_time_is_counted_once_for_overlapping_calls() {
        let meter = LinkMeter::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // Two calls overlap: 0-300 ms and 100-400 ms; then an idle gap.
        meter.start_at(ms(0));
        meter.start_at(ms(100));
        meter.end_at(ms(300), Some(150_000));
        meter.end_at(ms(400), Some(150_000));
        assert_eq!(meter.measured(), None, "0.4 s busy: no sample yet");
        // Another 200 ms call after a second idle: busy 0.6 s in all.
        meter.start_at(ms(1400));
        meter.end_at(ms(1600), Some(300_000));
        // 600 kB / 0.6 s (not over the 0.7 s of summed call time, nor
        // the 1.6 s of wall time).
        let e = meter.measured().unwrap();
        assert!((e - 1e6).abs() < 1.0, "{e}");
        // A failed call adds busy time but no bytes.
        meter.start_at(ms(2000));
        meter.end_at(ms(2600), None);
        assert_eq!(meter.measured(), Some(e), "no bytes: no sample");
    }

    #[test]
    fn calls_sharing_the_link_are_measured_when_they_settle() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // Four calls sharing the link complete together after 2 s: the
        // first completions take no sample (they would say 0.5 MB/s).
        let meter = LinkMeter::default();
        for _ in 0..4 {
            meter.start_at(ms(0));
        }
        for i in 0..3 {
            meter.end_at(ms(2000 + i), Some(1_000_000));
            assert_eq!(meter.measured(), None, "completion {i}");
        }
        meter.end_at(ms(2003), Some(1_000_000));
        let e = meter.measured().unwrap();
        assert!((e / 2e6 - 1.0).abs() < 0.01, "{e}");
    }
}
