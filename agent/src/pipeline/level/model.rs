//! Speed and ratio per level for one job's data. The candidate levels are
//! first measured on a sample of a batch (lowest first, and only as far
//! as they can still win: once compression alone is slower than the best
//! prediction so far, every higher level is slower still). Each real batch
//! then gives its level its own EWMAs of speed (which adds the checksum and
//! spool write) and ratio, and corrects the levels not used yet by EWMAs of
//! measured over calibrated speed and ratio. A level not yet seen on a real
//! batch is also credited with only [`UNTRIED_SPEED`] of that speed: a
//! sample can undersell what the high levels cost on a whole 4 MiB
//! batch (the first version, without this margin, chose 15 and 19 on
//! a 20 Mbit/s link and its compressor became the bottleneck), and
//! choosing a level the compressor cannot keep up with costs far more
//! than choosing one a notch too low.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{CANDIDATES, Estimate};

/// Weight of the newest observation in the EWMAs.
const ALPHA: f64 = 0.3;

/// Batches smaller than this say little about speed: not observed.
const MIN_OBSERVED: usize = 16 * 1024;

/// The share of its corrected calibrated speed a level not yet used on a
/// real batch is credited with.
pub const UNTRIED_SPEED: f64 = 0.6;

#[derive(Debug, Default, Clone)]
pub struct Model {
    calibrated: BTreeMap<i32, Estimate>,
    /// EWMAs of real batches, per level used.
    observed: BTreeMap<i32, Estimate>,
    speed_factor: Option<f64>,
    ratio_factor: Option<f64>,
}

fn ewma(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |o| o + ALPHA * (new - o))
}

impl Model {
    pub fn is_empty(&self) -> bool {
        self.calibrated.is_empty()
    }

    /// The estimates, corrected by what real batches showed.
    pub fn estimates(&self) -> Vec<Estimate> {
        let (s, r) = (
            self.speed_factor.unwrap_or(1.0),
            self.ratio_factor.unwrap_or(1.0),
        );
        self.calibrated
            .values()
            .map(|e| {
                self.observed.get(&e.level).copied().unwrap_or(Estimate {
                    level: e.level,
                    speed: e.speed * s * UNTRIED_SPEED,
                    ratio: (e.ratio * r).min(1.0),
                })
            })
            .collect()
    }

    /// Whether `level` was used on a real batch.
    pub fn tried(&self, level: i32) -> bool {
        self.observed.contains_key(&level)
    }

    /// One level's corrected estimate.
    pub fn estimate(&self, level: i32) -> Option<Estimate> {
        self.estimates().into_iter().find(|e| e.level == level)
    }

    /// Measures the candidates that may still win at `link` bytes/s and
    /// are not measured yet, with `compress(level, sample)` returning the
    /// compressed size and the time it took. Returns the levels measured.
    pub fn calibrate(
        &mut self,
        sample: &[u8],
        link: f64,
        mut compress: impl FnMut(i32, &[u8]) -> Option<(usize, Duration)>,
    ) -> Vec<i32> {
        let mut measured = Vec::new();
        if sample.is_empty() {
            return measured;
        }
        for level in CANDIDATES {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.calibrated.entry(level) {
                let Some((len, took)) = compress(level, sample) else {
                    continue;
                };
                let secs = took.as_secs_f64().max(1e-6);
                slot.insert(Estimate {
                    level,
                    speed: sample.len() as f64 / secs,
                    ratio: len as f64 / sample.len() as f64,
                });
                measured.push(level);
            }
            let estimates = self.estimates();
            let best = estimates
                .iter()
                .map(|e| e.seconds_per_byte(link))
                .fold(f64::INFINITY, f64::min);
            let this = estimates.iter().find(|e| e.level == level);
            if this.is_some_and(|e| 1.0 / e.speed > best) {
                break;
            }
        }
        measured
    }

    /// A real batch: `raw` bytes became `compressed` at `level` in
    /// `took` (compression, checksum and spool write).
    pub fn observe(&mut self, level: i32, raw: usize, compressed: usize, took: Duration) {
        let Some(cal) = self.calibrated.get(&level).copied() else {
            return;
        };
        if raw < MIN_OBSERVED {
            return;
        }
        let speed = raw as f64 / took.as_secs_f64().max(1e-6);
        let ratio = compressed as f64 / raw as f64;
        self.speed_factor = Some(ewma(self.speed_factor, speed / cal.speed));
        self.ratio_factor = Some(ewma(self.ratio_factor, ratio / cal.ratio));
        let seen = self.observed.get(&level);
        self.observed.insert(
            level,
            Estimate {
                level,
                speed: ewma(seen.map(|e| e.speed), speed),
                ratio: ewma(seen.map(|e| e.ratio), ratio),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake compressor: level L runs at `speed(L)` MB/s with ratio
    /// `ratio(L)`; records which levels were asked for.
    fn fake(asked: &mut Vec<i32>) -> impl FnMut(i32, &[u8]) -> Option<(usize, Duration)> + '_ {
        move |level, sample| {
            asked.push(level);
            let speed = 400e6 / 2f64.powi(level.max(0) / 2 + 1); // halves every 2 levels
            let ratio = 0.5 - 0.012 * f64::from(level + 5);
            Some((
                (sample.len() as f64 * ratio) as usize,
                Duration::from_secs_f64(sample.len() as f64 / speed),
            ))
        }
    }

    #[test]
    fn a_fast_link_calibrates_only_the_fast_levels() {
        let mut m = Model::default();
        let mut asked = Vec::new();
        m.calibrate(&[0u8; 100_000], 1e9, fake(&mut asked));
        // -5, -1 and 1 (200 MB/s) are compressor-bound; 3 is slower than
        // them, so nothing above it is measured.
        assert_eq!(asked, [-5, -1, 1, 3]);
    }

    #[test]
    fn a_slow_link_calibrates_further_and_a_slower_one_extends_it() {
        let mut m = Model::default();
        let mut asked = Vec::new();
        // 10 MB/s: level 7 (15 MB/s credited) compresses slower than level
        // 5 predicts (38 ms/MB, link-bound): 9 is not tried.
        m.calibrate(&[0u8; 100_000], 10e6, fake(&mut asked));
        assert_eq!(asked, [-5, -1, 1, 3, 5, 7]);
        // A slower link later: only the level not yet measured is run.
        let mut more = Vec::new();
        m.calibrate(&[0u8; 100_000], 100e3, fake(&mut more));
        assert_eq!(more, [9]);
    }

    #[test]
    fn real_batches_correct_every_level() {
        let mut m = Model::default();
        let mut asked = Vec::new();
        m.calibrate(&[0u8; 100_000], 1e5, fake(&mut asked));
        let before = m.estimates();
        // Before any real batch, every level is credited with 60% of its
        // calibrated speed.
        let cal3 = m.calibrated[&3];
        let est3 = m.estimate(3).unwrap();
        assert!((est3.speed / cal3.speed - UNTRIED_SPEED).abs() < 1e-9);
        // Real batches at level 3 run at half the calibrated speed and
        // compress 10% better.
        for _ in 0..30 {
            let raw = 4 << 20;
            let took = Duration::from_secs_f64(raw as f64 / (cal3.speed / 2.0));
            m.observe(3, raw, (raw as f64 * cal3.ratio * 0.9) as usize, took);
        }
        // Level 3 is now what was observed ...
        let seen3 = m.estimate(3).unwrap();
        assert!((seen3.speed / cal3.speed - 0.5).abs() < 0.01, "{seen3:?}");
        assert!((seen3.ratio / cal3.ratio - 0.9).abs() < 0.01, "{seen3:?}");
        // ... and every other level is corrected by the same factors.
        for (b, a) in before
            .iter()
            .zip(m.estimates())
            .filter(|(b, _)| b.level != 3)
        {
            assert!((a.speed / b.speed - 0.5).abs() < 0.01, "{b:?} -> {a:?}");
            assert!((a.ratio / b.ratio - 0.9).abs() < 0.01, "{b:?} -> {a:?}");
        }
        // Tiny batches and uncalibrated levels change nothing.
        let now = m.estimates();
        m.observe(3, 100, 10, Duration::from_secs(10));
        m.observe(4, 4 << 20, 10, Duration::from_secs(10));
        assert_eq!(now, m.estimates());
    }
}
