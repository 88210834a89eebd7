//! The zstd level of each batch (`spool.zstd_level = "auto"`, the default).
//!
//! The compressor thread and the uploads form a pipeline, so a job moves at
//! the pace of its slower stage. Per raw byte, level `L` costs
//! `1 / speed(L)` on the compressor thread (compression, checksum and spool
//! write, measured) and `ratio(L) / link` on the link (compressed bytes over
//! the link's bytes/s). [`choose`] takes the level minimising
//! `max(1 / speed(L), ratio(L) / link)`: the best ratio the compressor can
//! still produce faster than the link drains it — high levels on a slow
//! link, the fastest ones (1, or a negative level) where the link is fast.
//!
//! | module     | responsibility                                                 |
//! |------------|----------------------------------------------------------------|
//! | [`link`]   | the link's bytes/s from `PutBatch` calls (EWMA, capped, kept)  |
//! | [`model`]  | speed and ratio per level: calibrated on a sample, then EWMAs  |
//! | [`picker`] | the compressor thread's per-batch choice, and its log lines    |
//!
//! `link` is the collector's intake as the agent sees it: bytes of batches
//! over the time `PutBatch` calls were in flight, so on a fast network it
//! also holds the collector's loading time, which does not shrink with the
//! level: there a higher level cannot help, yet the model may try one
//! (ARCHITECTURE.md section 3b, limits).

pub mod link;
pub mod model;
pub mod picker;

pub use picker::LevelPicker;

/// The level used before anything is measured: zstd's own default.
pub const DEFAULT_LEVEL: i32 = 3;

/// The levels the automatic choice considers (and calibrates, lowest
/// first). None above 9: on 4 MiB batches zstd's context takes about
/// 10 MiB at level 9 but 40 MiB at 12 and 50-65 MiB at 15 to 19 (measured),
/// which would take the agent past its 64 MiB memory goal for 5-10% fewer
/// bytes; a forced `zstd_level` still reaches 19.
pub const CANDIDATES: [i32; 7] = [-5, -1, 1, 3, 5, 7, 9];

/// What one level costs, as estimated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub level: i32,
    /// Raw bytes per second through the compressor thread (compression,
    /// checksum and spool write).
    pub speed: f64,
    /// Compressed bytes per raw byte.
    pub ratio: f64,
}

impl Estimate {
    /// Predicted seconds per raw byte when the link takes `link` bytes/s.
    pub fn seconds_per_byte(&self, link: f64) -> f64 {
        (1.0 / self.speed).max(self.ratio / link)
    }
}

/// A change is made only when it is predicted to gain more than this
/// fraction, so noise does not make the level flap between batches.
pub const HYSTERESIS: f64 = 0.05;

/// The level to use, given the estimates (any order), the link's bytes/s
/// and the level in use. Pure: the decision the tests pin down.
pub fn choose(estimates: &[Estimate], link: f64, current: Option<i32>) -> Option<Estimate> {
    let usable = |e: &&Estimate| e.speed > 0.0 && e.ratio > 0.0 && e.speed.is_finite();
    let best = estimates
        .iter()
        .filter(usable)
        .min_by(|a, b| {
            a.seconds_per_byte(link)
                .total_cmp(&b.seconds_per_byte(link))
                // Equal: the faster level (less CPU).
                .then(b.speed.total_cmp(&a.speed))
        })
        .copied()?;
    if let Some(cur) = current.and_then(|c| estimates.iter().filter(usable).find(|e| e.level == c))
        && cur.seconds_per_byte(link) <= best.seconds_per_byte(link) * (1.0 + HYSTERESIS)
    {
        return Some(*cur);
    }
    Some(best)
}

/// A level to try on the next batch although [`choose`] keeps `current`:
/// when the link is the bottleneck at `current`, the next higher candidate
/// (in `levels`, ascending) has an estimate but was never used on a real
/// batch (`tried` says), and it is predicted nearly as good (within the
/// hysteresis). A sample can undersell what a higher level saves on a
/// whole batch (on the 20 Mbit/s bench link whole batches at level 9 were
/// 10% smaller than at 3, yet the choice, made on samples, stayed at 3),
/// so without trying it the choice would stay put; one batch at a level
/// the compressor can, by its estimate, keep up with costs little, and its
/// real figures then decide.
pub fn probe(
    estimates: &[Estimate],
    levels: &[i32],
    current: i32,
    link: f64,
    tried: impl Fn(i32) -> bool,
) -> Option<i32> {
    let at = |l: i32| estimates.iter().find(|e| e.level == l);
    let cur = at(current)?;
    if 1.0 / cur.speed >= cur.ratio / link {
        return None; // compression is the bottleneck: a higher level only slows it
    }
    let next = levels.iter().copied().find(|l| *l > current)?;
    let n = at(next)?;
    (!tried(next) && n.seconds_per_byte(link) <= cur.seconds_per_byte(link) * (1.0 + HYSTERESIS))
        .then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;

    /// Speeds and ratios of the PEC tables on this project's 2-core
    /// machine, roughly (compression + spool write).
    fn pec_like() -> Vec<Estimate> {
        [
            (-5, 420.0, 0.52),
            (-1, 330.0, 0.44),
            (1, 260.0, 0.37),
            (3, 170.0, 0.34),
            (6, 70.0, 0.32),
            (9, 40.0, 0.31),
            (12, 18.0, 0.30),
            (15, 7.0, 0.29),
            (19, 2.0, 0.26),
        ]
        .into_iter()
        .map(|(level, speed, ratio)| Estimate {
            level,
            speed: speed * MB,
            ratio,
        })
        .collect()
    }

    fn level(link_mbit: f64) -> i32 {
        choose(&pec_like(), link_mbit * MB / 8.0, None)
            .unwrap()
            .level
    }

    #[test]
    fn a_fast_link_gets_the_fastest_level() {
        // 10 Gbit/s: the compressor is the bottleneck at any level.
        assert_eq!(level(10_000.0), -5);
        // 1 Gbit/s (125 MB/s): -5 would make the link the bottleneck
        // (0.52 / 125 = 4.2 ms/MB against 2.4 ms/MB of compression); -1
        // balances both (3.5 ms/MB).
        assert_eq!(level(1_000.0), -1);
    }

    #[test]
    fn a_slow_link_gets_the_best_ratio_the_cpu_keeps_up_with() {
        // 20 Mbit/s = 2.5 MB/s: level 12 predicts max(1/18, 0.30/2.5) =
        // 0.12 s/MB, level 15 max(1/7, 0.29/2.5) = 0.143, 9: 0.124.
        assert_eq!(level(20.0), 12);
        // 2 Mbit/s: even level 19 (2 MB/s) outruns the link's 0.25 MB/s.
        assert_eq!(level(2.0), 19);
        // 100 Mbit/s = 12.5 MB/s: level 6 predicts 0.0256 s/MB, level 3
        // 0.0272, level 9 0.025 (link-bound: 0.31/12.5 = 0.0248 < 1/40 = 0.025).
        assert_eq!(level(100.0), 9);
    }

    #[test]
    fn the_level_only_grows_as_the_link_slows() {
        let mut last = i32::MIN;
        for mbit in [
            100_000.0, 10_000.0, 1000.0, 300.0, 100.0, 50.0, 20.0, 5.0, 1.0,
        ] {
            let l = level(mbit);
            assert!(l >= last, "{mbit} Mbit/s chose {l} after {last}");
            last = l;
        }
        assert_eq!(last, 19);
    }

    #[test]
    fn hysteresis_keeps_a_level_that_is_nearly_as_good() {
        let est = pec_like();
        // 20 Mbit/s: 12 is best (0.120 s/MB); 9 predicts 0.124, within 5%.
        assert_eq!(choose(&est, 2.5 * MB, Some(9)).unwrap().level, 9);
        // ... but 3 predicts 0.136 (13% worse): changed.
        assert_eq!(choose(&est, 2.5 * MB, Some(3)).unwrap().level, 12);
        // A current level without an estimate does not block the change.
        assert_eq!(choose(&est, 2.5 * MB, Some(7)).unwrap().level, 12);
    }

    #[test]
    fn a_nearly_as_good_higher_level_is_tried_once_when_the_link_is_the_bottleneck() {
        let est = pec_like();
        let levels = [-5, -1, 1, 3, 6, 9, 12, 15, 19];
        let never = |_| false;
        // 20 Mbit/s with 9 in use: 12 predicts 0.120 against 0.124, within
        // 5%: choose keeps 9, probe tries 12.
        assert_eq!(choose(&est, 2.5 * MB, Some(9)).unwrap().level, 9);
        assert_eq!(probe(&est, &levels, 9, 2.5 * MB, never), Some(12));
        // ... once only.
        assert_eq!(probe(&est, &levels, 9, 2.5 * MB, |l| l == 12), None);
        // Not when the next level is predicted clearly worse (15: 0.143).
        assert_eq!(probe(&est, &levels, 12, 2.5 * MB, never), None);
        // Not when compression is the bottleneck (10 Gbit/s, level 3).
        assert_eq!(probe(&est, &levels, 3, 1250.0 * MB, never), None);
        // Not above the highest candidate, nor from a level without an estimate.
        assert_eq!(probe(&est, &levels, 19, 0.1 * MB, never), None);
        assert_eq!(probe(&est, &levels, 4, 2.5 * MB, never), None);
    }

    #[test]
    fn unusable_estimates_are_ignored() {
        let mut est = pec_like();
        est.push(Estimate {
            level: 4,
            speed: f64::INFINITY,
            ratio: 0.1,
        });
        est.push(Estimate {
            level: 5,
            speed: 0.0,
            ratio: 0.1,
        });
        assert_eq!(choose(&est, 2.5 * MB, None).unwrap().level, 12);
        assert_eq!(choose(&[], 2.5 * MB, None), None);
    }
}
