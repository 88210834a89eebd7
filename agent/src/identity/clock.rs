//! The collector's clock as seen from the agent.
//!
//! Enroll, Renew and Heartbeat responses carry the collector's time. The
//! offset `collector − midpoint(local send, local receive)` is recorded
//! together with a point on tokio's monotonic clock; from then on
//! [`ClockSync::collector_now_ms`] advances with the monotonic clock only, so
//! a wall clock that is wrong or jumps cannot make the renewal schedule skip
//! (and tests drive it with `tokio::time::pause`/`advance`).
//!
//! An offset above [`SKEW_WARN_MS`] is logged at warn once per change and
//! reported in heartbeats.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Beyond this difference from the collector's clock, the agent warns.
pub const SKEW_WARN_MS: i64 = 60_000;

/// The wall clock, in Unix milliseconds.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `collector − midpoint(sent, received)`, all in Unix milliseconds.
pub fn offset_ms(sent_ms: i64, received_ms: i64, collector_ms: i64) -> i64 {
    collector_ms - (sent_ms + (received_ms - sent_ms) / 2)
}

/// Human form of an offset: "3m 12s ahead of" / "behind".
pub fn describe(offset_ms: i64) -> String {
    let d = std::time::Duration::from_secs(offset_ms.unsigned_abs() / 1000);
    let dir = if offset_ms > 0 { "behind" } else { "ahead of" };
    format!(
        "this machine's clock is {} {dir} the collector's",
        humantime::format_duration(d)
    )
}

#[derive(Debug)]
struct Inner {
    offset_ms: i64,
    /// Monotonic instant and the local wall time it corresponded to.
    anchor: Instant,
    anchor_local_ms: i64,
    measured: bool,
    /// The offset last warned about, while the clock is off.
    warned_ms: Option<i64>,
}

/// Last known offset to the collector's clock, anchored on the monotonic clock.
#[derive(Debug)]
pub struct ClockSync {
    inner: Mutex<Inner>,
}

impl ClockSync {
    /// Starts from an offset measured earlier (e.g. kept in `agent.json`).
    pub fn new(initial_offset_ms: i64) -> Self {
        Self::anchored(now_unix_ms(), initial_offset_ms)
    }

    /// Starts from a given local time and offset, anchored at the
    /// (possibly paused) tokio clock's present.
    pub fn anchored(local_now_ms: i64, offset_ms: i64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                offset_ms,
                anchor: Instant::now(),
                anchor_local_ms: local_now_ms,
                measured: false,
                warned_ms: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a response's time; returns the measured offset. Logs a
    /// warning when the clocks differ by more than a minute (once per change).
    pub fn record(&self, sent_ms: i64, received_ms: i64, collector_ms: i64) -> i64 {
        let offset = offset_ms(sent_ms, received_ms, collector_ms);
        let mut g = self.lock();
        g.offset_ms = offset;
        g.anchor = Instant::now();
        g.anchor_local_ms = received_ms;
        g.measured = true;
        if offset.abs() > SKEW_WARN_MS {
            let changed = g
                .warned_ms
                .is_none_or(|w| (w - offset).abs() > SKEW_WARN_MS);
            if changed {
                g.warned_ms = Some(offset);
                tracing::warn!(
                    clock_offset_ms = offset,
                    "{}: fix the time synchronisation (NTP) of this machine",
                    describe(offset)
                );
            }
        } else if g.warned_ms.take().is_some() {
            tracing::info!(
                clock_offset_ms = offset,
                "clock agrees with the collector's again"
            );
        }
        offset
    }

    /// Last offset (collector − agent), in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.lock().offset_ms
    }

    /// Whether an offset was measured by this process.
    pub fn measured(&self) -> bool {
        self.lock().measured
    }

    /// The local wall time, extrapolated on the monotonic clock from the
    /// last measurement.
    pub fn local_now_ms(&self) -> i64 {
        let g = self.lock();
        g.anchor_local_ms + g.anchor.elapsed().as_millis() as i64
    }

    /// The collector's present time, as well as the agent can tell.
    pub fn collector_now_ms(&self) -> i64 {
        let g = self.lock();
        g.anchor_local_ms + g.anchor.elapsed().as_millis() as i64 + g.offset_ms
    }

    /// [`Self::collector_now_ms`] as a time (plan expiry is judged on it).
    pub fn collector_now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.collector_now_ms())
            .unwrap_or_else(chrono::Utc::now)
    }

    /// A warning for the heartbeat while the clocks disagree.
    pub fn warning(&self) -> Option<String> {
        let off = self.offset_ms();
        (off.abs() > SKEW_WARN_MS).then(|| describe(off))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn offset_uses_the_midpoint() {
        assert_eq!(offset_ms(1_000, 1_200, 1_100), 0);
        assert_eq!(offset_ms(1_000, 1_200, 61_100), 60_000);
        assert_eq!(offset_ms(1_000, 1_000, 500), -500);
    }

    #[test]
    fn warning_only_beyond_a_minute() {
        let c = ClockSync::new(0);
        assert!(!c.measured());
        c.record(0, 100, 50 + 30_000);
        assert!(c.measured());
        assert_eq!(c.offset_ms(), 30_000);
        assert!(c.warning().is_none());
        c.record(0, 100, 50 + 5 * 60_000);
        let w = c.warning().unwrap();
        assert!(w.contains("5m behind"), "{w}");
        c.record(0, 100, 50 - 2 * 60_000);
        assert!(c.warning().unwrap().contains("2m ahead of"));
    }

    #[tokio::test(start_paused = true)]
    async fn collector_time_follows_the_monotonic_clock() {
        // The wall clock says 1000 s, the collector 4600 s.
        let c = ClockSync::anchored(1_000_000, 3_600_000);
        assert_eq!(c.collector_now_ms(), 4_600_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(c.local_now_ms(), 1_090_000);
        assert_eq!(c.collector_now_ms(), 4_690_000);
    }
}
