//! The compressor thread's side: before each batch, the level to use (a
//! forced `spool.zstd_level`, or [`super::choose`] over the job's
//! [`Model`] and the link); after it, what the batch cost. Every change
//! of level is logged with the figures behind it.

use std::time::{Duration, Instant};

use transmissor_proto::batch::BatchCompressor;

use super::link::{self, LinkSource};
use super::model::Model;
use super::{CANDIDATES, DEFAULT_LEVEL, Estimate, choose, probe};
use crate::config::{AgentConfig, ZstdLevel};

/// The sample each calibration compresses at every level it measures:
/// above 256 KiB, so zstd compresses it with the same parameter table as a
/// whole batch (it picks its strategy per level from the input's size, and
/// on 128 KiB of the PEC visits table levels 5 to 9 compressed *worse*
/// than 3, where on 4 MiB batches level 9 is 10% smaller).
const SAMPLE: usize = 512 * 1024;
/// Smaller first batches are not worth calibrating on.
const MIN_SAMPLE: usize = 32 * 1024;

pub struct LevelPicker {
    job: String,
    mode: ZstdLevel,
    model: Model,
    current: i32,
    /// "No link figure yet" was said for this job.
    said_default: bool,
}

/// One batch under way.
pub struct BatchStart {
    level: i32,
    at: Instant,
}

fn mib_per_s(bytes_per_s: f64) -> f64 {
    (bytes_per_s / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

impl LevelPicker {
    pub fn new(cfg: &AgentConfig, job: &str) -> Self {
        let mode = cfg.spool.zstd_level;
        let current = match mode {
            ZstdLevel::Fixed(l) => l,
            // Where the last job left it: the same link.
            ZstdLevel::Auto => link::global().level().unwrap_or(DEFAULT_LEVEL),
        };
        Self {
            job: job.to_string(),
            mode,
            model: Model::default(),
            current,
            said_default: false,
        }
    }

    /// The level the job's compressor starts with.
    pub fn initial(&self) -> i32 {
        self.current
    }

    /// Chooses the level for the batch `raw` and sets it on `compressor`.
    pub fn before_batch(&mut self, compressor: &mut BatchCompressor, raw: &[u8]) -> BatchStart {
        if self.mode == ZstdLevel::Auto {
            let next = self.decide(raw);
            if next != self.current && compressor.set_level(next).is_ok() {
                self.current = next;
            }
            link::global().set_level(self.current);
        }
        BatchStart {
            level: self.current,
            at: Instant::now(),
        }
    }

    /// The batch of `raw_len` bytes is written: learn from what it cost.
    pub fn after_batch(&mut self, start: BatchStart, compressor: &BatchCompressor, raw_len: usize) {
        if self.mode == ZstdLevel::Auto {
            self.model.observe(
                start.level,
                raw_len,
                compressor.last_frame_len(),
                start.at.elapsed(),
            );
        }
    }

    fn decide(&mut self, raw: &[u8]) -> i32 {
        let Some((link, source)) = link::global().link() else {
            if !self.said_default {
                self.said_default = true;
                tracing::info!(job = %self.job, level = self.current,
                    "zstd level: no link measurement yet and no cap in force; starting at a moderate level");
            }
            return self.current;
        };
        if raw.len() >= MIN_SAMPLE {
            let sample = &raw[..raw.len().min(SAMPLE)];
            let measured = self.model.calibrate(sample, link, calibrate_one);
            if !measured.is_empty() {
                tracing::debug!(job = %self.job, levels = ?measured, sample_bytes = sample.len(),
                    "zstd levels calibrated");
            }
        }
        let estimates = self.model.estimates();
        tracing::debug!(job = %self.job, current = self.current, link_bytes_per_s = link as u64,
            estimates = ?estimates.iter().map(|e| (e.level, (e.speed / 1e6).round(), (e.ratio * 1000.0).round() / 1000.0)).collect::<Vec<_>>(),
            "zstd level estimates (level, MB/s, ratio)");
        let Some(best) = choose(&estimates, link, Some(self.current)) else {
            return self.current;
        };
        if best.level != self.current {
            self.log_change(best, link, source, "predicted faster");
            return best.level;
        }
        if let Some(next) = probe(&estimates, &CANDIDATES, self.current, link, |l| {
            self.model.tried(l)
        }) && let Some(e) = self.model.estimate(next)
        {
            self.log_change(e, link, source, "trying a higher level on one batch");
            return next;
        }
        best.level
    }

    fn log_change(&self, best: Estimate, link: f64, source: LinkSource, why: &'static str) {
        let old = self.model.estimate(self.current);
        let ms_per_mib =
            |e: &Estimate| (e.seconds_per_byte(link) * 1024.0 * 1024.0 * 1e3 * 10.0).round() / 10.0;
        tracing::info!(
            job = %self.job,
            from = self.current,
            to = best.level,
            link_mib_per_s = mib_per_s(link),
            link_source = source.name(),
            compress_mib_per_s = mib_per_s(best.speed),
            ratio = (best.ratio * 1000.0).round() / 1000.0,
            predicted_ms_per_raw_mib = ms_per_mib(&best),
            previous_ms_per_raw_mib = old.as_ref().map(ms_per_mib),
            bottleneck = if 1.0 / best.speed >= best.ratio / link { "compression" } else { "link" },
            why,
            "zstd level changed"
        );
    }
}

/// Compresses `sample` at `level`: compressed size and time. The first
/// pass only warms the context (its tables are allocated and faulted in
/// on first use); the second is timed.
fn calibrate_one(level: i32, sample: &[u8]) -> Option<(usize, Duration)> {
    let mut c = BatchCompressor::new(level).ok()?;
    c.compress_in_place(sample).ok()?;
    let t = Instant::now();
    let n = c.compress_in_place(sample).ok()?.len();
    Some((n, t.elapsed()))
}
