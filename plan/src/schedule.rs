//! When a job runs: a cron expression in the municipality's time zone,
//! plus a per-agent jitter so thousands of agents do not start at once.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::cron::{CronError, CronExpr};

/// The largest jitter window a plan may ask for.
pub const MAX_JITTER: Duration = Duration::from_secs(12 * 3600);

/// A parsed schedule; an invalid expression never gets this far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub cron: CronExpr,
    /// Each agent starts at a stable offset in `[0, jitter)` after a slot.
    pub jitter: Duration,
}

impl Schedule {
    /// `jitter` above [`MAX_JITTER`] is refused by the plan parser, not here.
    pub fn new(cron: &str, jitter: Duration) -> Result<Self, CronError> {
        Ok(Self {
            cron: CronExpr::parse(cron)?,
            jitter,
        })
    }

    /// The first slot strictly after `after`, in the municipality's zone
    /// `tz`. A local time skipped by a daylight-saving change fires at the
    /// next valid instant; one that occurs twice fires once.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.cron.next_after(after, tz)
    }

    /// The most recent slot at or before `at` (at most ~400 days back),
    /// for catching up on a run missed while the machine was off.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.cron.latest_at_or_before(at, tz)
    }

    /// A stable offset in `[0, jitter)` from the SHA-256 of `seed` (e.g.
    /// the IBGE code and the job name): the same agent always gets the
    /// same offset, and many agents spread evenly over the window.
    pub fn jitter_offset(&self, seed: &[u8]) -> Duration {
        let window = self.jitter.as_nanos();
        if window == 0 {
            return Duration::ZERO;
        }
        let digest = Sha256::digest(seed);
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        let nanos = u128::from_be_bytes(first) % window;
        // nanos < jitter, which is a Duration: the conversion cannot fail.
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cron \"{}\", jitter {}",
            self.cron,
            humantime::format_duration(self.jitter)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_stable_bounded_and_spread() {
        let s = Schedule::new("30 2 * * 1-5", Duration::from_secs(45 * 60)).unwrap();
        let a = s.jitter_offset(b"3550308/atendimentos");
        assert_eq!(a, s.jitter_offset(b"3550308/atendimentos"));
        assert_ne!(a, s.jitter_offset(b"3304557/atendimentos"));
        let mut buckets = [0u32; 9];
        for i in 0..5570u32 {
            let off = s.jitter_offset(format!("{i:07}/job").as_bytes());
            assert!(off < s.jitter);
            buckets[(off.as_secs() / 300) as usize] += 1;
        }
        // 5570 agents over nine 5-minute buckets: ~619 each.
        assert!(
            buckets.iter().all(|&n| (450..800).contains(&n)),
            "{buckets:?}"
        );
        let none = Schedule::new("30 2 * * *", Duration::ZERO).unwrap();
        assert_eq!(none.jitter_offset(b"x"), Duration::ZERO);
    }

    #[test]
    fn display() {
        let s = Schedule::new("30 2 * * 1-5", Duration::from_secs(45 * 60)).unwrap();
        assert_eq!(s.to_string(), "cron \"30 2 * * 1-5\", jitter 45m");
    }
}
