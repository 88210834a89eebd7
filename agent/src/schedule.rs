//! When each job runs, and what was run: a job's [`Timing`] (a plan's cron
//! schedule, or a local job's daily times or interval), read in the
//! municipality's time zone, plus a stable per-agent jitter offset; and the
//! [`Ledger`] kept in the state directory, from which missed or failed
//! slots are caught up at the next start (like anacron), at most once per
//! missed slot.
//!
//! Times are parsed once (config or plan) into typed values; nothing here
//! re-parses text or falls back silently.
//!
//! A job's **slot** is an instant its timing names; it **fires** at slot +
//! offset, where the offset is drawn once from the job's jitter window by a
//! hash of the municipality and the job, so thousands of agents spread over
//! the window and each keeps its own time from day to day.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::config::ScheduleConfig;

/// How a job's slots are defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timing {
    /// A plan's cron expression and jitter window.
    Cron(transmissor_plan::Schedule),
    /// Local jobs: fixed local times of the day.
    Daily {
        times: Vec<NaiveTime>,
        weekdays_only: bool,
    },
    /// Local jobs: every `d`, on multiples of `d` since the Unix epoch.
    Every(Duration),
}

/// How far back [`Timing::latest_at_or_before`] searches daily times.
const DAILY_LOOKBACK_DAYS: u64 = 400;

impl Timing {
    /// The local jobs' timing from `[schedule]`; `None` when it sets none.
    pub fn from_config(cfg: &ScheduleConfig) -> Option<Self> {
        if let Some(every) = cfg.every {
            return Some(Self::Every(every));
        }
        if cfg.daily_at.is_empty() {
            return None;
        }
        let mut times: Vec<NaiveTime> = cfg.daily_at.iter().map(|t| t.0).collect();
        times.sort();
        times.dedup();
        Some(Self::Daily {
            times,
            weekdays_only: cfg.weekdays_only,
        })
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(s) => s.next_after(after, tz),
            Self::Every(d) => {
                let step = d.as_millis().max(1) as i64;
                let t = after.timestamp_millis();
                DateTime::from_timestamp_millis((t.div_euclid(step) + 1) * step)
            }
            Self::Daily {
                times,
                weekdays_only,
            } => {
                let local = after.with_timezone(&tz).date_naive();
                (0..9u64)
                    .flat_map(|day| {
                        daily_slots(local + chrono::Days::new(day), times, *weekdays_only, tz)
                    })
                    .find(|c| *c > after)
            }
        }
    }

    /// The most recent slot at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(s) => s.latest_at_or_before(at, tz),
            Self::Every(d) => {
                let step = d.as_millis().max(1) as i64;
                let t = at.timestamp_millis();
                DateTime::from_timestamp_millis(t.div_euclid(step) * step)
            }
            Self::Daily {
                times,
                weekdays_only,
            } => {
                let local = at.with_timezone(&tz).date_naive();
                (0..DAILY_LOOKBACK_DAYS).find_map(|day| {
                    let date = local.checked_sub_days(chrono::Days::new(day))?;
                    daily_slots(date, times, *weekdays_only, tz)
                        .into_iter()
                        .rev()
                        .find(|c| *c <= at)
                })
            }
        }
    }

    /// This agent's stable offset after each slot (`seed`: IBGE + job).
    pub fn offset(&self, seed: &[u8]) -> Duration {
        match self {
            Self::Cron(s) => s.jitter_offset(seed),
            _ => Duration::ZERO,
        }
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cron(s) => write!(f, "{s}"),
            Self::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Self::Daily {
                times,
                weekdays_only,
            } => {
                let t: Vec<String> = times
                    .iter()
                    .map(|t| t.format("%H:%M").to_string())
                    .collect();
                write!(
                    f,
                    "daily at {}{}",
                    t.join(", "),
                    if *weekdays_only {
                        ", Monday to Friday"
                    } else {
                        ""
                    }
                )
            }
        }
    }
}

/// The slots of one local day, in order. A time a DST change skips is
/// taken an hour later; one that occurs twice, at its first occurrence.
fn daily_slots(
    date: chrono::NaiveDate,
    times: &[NaiveTime],
    weekdays_only: bool,
    tz: Tz,
) -> Vec<DateTime<Utc>> {
    if weekdays_only && matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
        return Vec::new();
    }
    times
        .iter()
        .filter_map(|t| {
            let local = date.and_time(*t);
            tz.from_local_datetime(&local)
                .earliest()
                .or_else(|| {
                    tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                        .earliest()
                })
                .map(|c| c.with_timezone(&Utc))
        })
        .collect()
}

/// One job as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct JobClock {
    pub job: String,
    pub timing: Timing,
    /// Stable offset after each slot (jitter).
    pub offset: Duration,
}

impl JobClock {
    pub fn new(job: &str, timing: Timing, ibge: &str) -> Self {
        let offset = timing.offset(format!("{ibge}/{job}").as_bytes());
        Self {
            job: job.to_string(),
            timing,
            offset,
        }
    }

    fn offset_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.offset).unwrap_or_default()
    }

    /// The latest slot whose firing time (slot + offset) is at or before `now`.
    pub fn latest_fired(&self, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.timing
            .latest_at_or_before(now - self.offset_chrono(), tz)
    }

    /// The next slot firing strictly after `now`, and when it fires.
    pub fn next_firing(
        &self,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let slot = self.timing.next_after(now - self.offset_chrono(), tz)?;
        Some((slot, slot + self.offset_chrono()))
    }
}

/// What was run, per job: persisted in `<state_dir>/plan/schedule.json`
/// (written atomically) so catch-up survives restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default)]
    pub jobs: BTreeMap<String, JobRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job was first scheduled at this time: slots before it are not
    /// caught up (a new job starts at its next slot, not in a burst).
    pub known_since: Option<DateTime<Utc>>,
    /// The latest slot whose run committed.
    pub done_slot: Option<DateTime<Utc>>,
    /// The latest slot a run was started for (scheduled or catch-up).
    pub attempted_slot: Option<DateTime<Utc>>,
    /// The latest slot a catch-up run was started for: each missed slot is
    /// caught up at most once.
    pub caught_up_slot: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("schedule state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("schedule state {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Ledger {
    pub const FILE: &'static str = "schedule.json";

    /// Reads the ledger (an absent file is an empty ledger).
    pub fn load(dir: &Path) -> Result<Self, LedgerError> {
        let path = dir.join(Self::FILE);
        match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| LedgerError::Parse { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(LedgerError::Io { path, source }),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), LedgerError> {
        let path = dir.join(Self::FILE);
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::identity::write_atomic(&path, &bytes, false)
            .map_err(|source| LedgerError::Io { path, source })
    }

    fn record(&mut self, job: &str) -> &mut JobRecord {
        self.jobs.entry(job.to_string()).or_default()
    }

    /// Registers jobs seen for the first time at `now`, and forgets jobs no
    /// longer scheduled.
    pub fn sync_jobs(&mut self, jobs: &[JobClock], now: DateTime<Utc>) {
        self.jobs
            .retain(|name, _| jobs.iter().any(|j| &j.job == name));
        for j in jobs {
            let r = self.record(&j.job);
            if r.known_since.is_none() {
                r.known_since = Some(now);
            }
        }
    }

    /// The catch-up due at start: for each job, its latest fired slot when
    /// that slot was neither committed nor already caught up, and came
    /// after the job was first scheduled. Marks each as caught up.
    pub fn take_catch_up(
        &mut self,
        jobs: &[JobClock],
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Vec<(String, DateTime<Utc>)> {
        let mut due = Vec::new();
        for j in jobs {
            let Some(slot) = j.latest_fired(now, tz) else {
                continue;
            };
            let r = self.record(&j.job);
            let after_known = r.known_since.is_some_and(|k| slot >= k - j.offset_chrono());
            let done = r.done_slot.is_some_and(|d| d >= slot);
            let caught = r.caught_up_slot.is_some_and(|c| c >= slot);
            if after_known && !done && !caught {
                r.caught_up_slot = Some(slot);
                due.push((j.job.clone(), slot));
            }
        }
        due
    }

    pub fn attempted(&mut self, job: &str, slot: DateTime<Utc>) {
        let r = self.record(job);
        r.attempted_slot = r.attempted_slot.max(Some(slot));
    }

    pub fn committed(&mut self, job: &str, slot: DateTime<Utc>) {
        let r = self.record(job);
        r.done_slot = r.done_slot.max(Some(slot));
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
