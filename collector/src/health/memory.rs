//! What the evaluator remembers of each job's transmissions, kept in
//! memory and updated incrementally: one load of the recent past when it
//! starts, then only what finished (or is open) since its previous pass.
//! Applying the same transmission twice changes nothing, so the windows
//! of two passes may overlap.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use super::view::{JobLast, SPARK_DAYS};
use crate::monitor::{Attempt, JobFacts, Outcome};

/// How far back the evaluator remembers commits (the row-count history and
/// the sparkline both fit in it).
pub const REMEMBER_DAYS: i64 = 35;

/// Commits remembered per job, at most.
const MAX_COMMITS: usize = 64;

/// One transmission, as read from `transmissor.transmissions`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Seen {
    pub id: i64,
    pub ibge: String,
    pub job: String,
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rows: i64,
    pub error: Option<String>,
}

impl Seen {
    fn outcome(&self) -> Outcome {
        match self.state.as_str() {
            "committed" => Outcome::Committed,
            "failed" => Outcome::Failed,
            "aborted" => Outcome::Aborted,
            _ => Outcome::Open,
        }
    }

    fn at(&self) -> DateTime<Utc> {
        self.finished_at.unwrap_or(self.started_at)
    }
}

#[derive(Debug, Clone, Copy)]
struct Commit {
    id: i64,
    at: DateTime<Utc>,
    rows: u64,
}

/// One job of one municipality.
#[derive(Debug, Default)]
pub struct JobMemory {
    /// The newest transmission (highest id: ids follow `Begin` order).
    last: Option<(i64, Attempt, i64)>,
    /// Newest first.
    commits: VecDeque<Commit>,
}

impl JobMemory {
    fn apply(&mut self, t: &Seen) {
        let outcome = t.outcome();
        if self.last.as_ref().is_none_or(|(id, _, _)| t.id >= *id) {
            let attempt = Attempt {
                at: t.at(),
                outcome,
                error: t.error.clone(),
            };
            self.last = Some((t.id, attempt, t.rows));
        }
        if outcome == Outcome::Committed && !self.commits.iter().any(|c| c.id == t.id) {
            let commit = Commit {
                id: t.id,
                at: t.at(),
                rows: u64::try_from(t.rows).unwrap_or(0),
            };
            let pos = self.commits.iter().position(|c| c.at < commit.at);
            self.commits
                .insert(pos.unwrap_or(self.commits.len()), commit);
            self.commits.truncate(MAX_COMMITS);
        }
    }

    fn prune(&mut self, before: DateTime<Utc>) {
        // Keep the newest commit whatever its age: it is the last success.
        while self.commits.len() > 1 && self.commits.back().is_some_and(|c| c.at < before) {
            self.commits.pop_back();
        }
    }

    /// The facts [`crate::monitor::derive`] needs (schedule and expected
    /// start are the caller's).
    pub fn facts(&self, job: &str) -> JobFacts {
        let mut commits = self.commits.iter();
        let latest = commits.next();
        JobFacts {
            job: job.to_string(),
            schedule: None,
            expected_since: None,
            last_commit: latest.map(|c| c.at),
            last_attempt: self.last.as_ref().map(|(_, a, _)| a.clone()),
            latest_rows: latest.map(|c| c.rows),
            row_history: commits.map(|c| c.rows).collect(),
        }
    }

    /// The job's last transmission, for the overview.
    pub fn last(&self, job: &str) -> Option<JobLast> {
        let (_, attempt, rows) = self.last.as_ref()?;
        Some(JobLast {
            job: job.to_string(),
            state: attempt.outcome.as_str().to_string(),
            at: attempt.at,
            rows: *rows,
            last_commit: self.commits.front().map(|c| c.at),
        })
    }
}

/// Every job of every municipality.
#[derive(Debug, Default)]
pub struct Memory {
    /// ibge → job → memory.
    jobs: HashMap<String, BTreeMap<String, JobMemory>>,
}

impl Memory {
    pub fn apply(&mut self, t: &Seen) {
        self.jobs
            .entry(t.ibge.clone())
            .or_default()
            .entry(t.job.clone())
            .or_default()
            .apply(t);
    }

    /// Forgets commits older than [`REMEMBER_DAYS`] (but each job's newest).
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let before = now - TimeDelta::days(REMEMBER_DAYS);
        for jobs in self.jobs.values_mut() {
            for job in jobs.values_mut() {
                job.prune(before);
            }
        }
    }

    /// The jobs of a municipality, by name.
    pub fn jobs_of(&self, ibge: &str) -> Option<&BTreeMap<String, JobMemory>> {
        self.jobs.get(ibge)
    }

    /// The newest commit of any job, and the rows of each job's newest
    /// commit, summed.
    pub fn last_success(&self, ibge: &str) -> (Option<DateTime<Utc>>, Option<i64>) {
        let Some(jobs) = self.jobs.get(ibge) else {
            return (None, None);
        };
        let newest = jobs.values().filter_map(|j| j.commits.front());
        let at = newest.clone().map(|c| c.at).max();
        let rows = at.map(|_| {
            newest
                .map(|c| i64::try_from(c.rows).unwrap_or(i64::MAX))
                .sum()
        });
        (at, rows)
    }

    /// Rows committed per local day in `tz`, the [`SPARK_DAYS`] days up to
    /// `now`'s, oldest first.
    pub fn daily_rows(&self, ibge: &str, tz: Tz, now: DateTime<Utc>) -> Vec<i64> {
        let today = now.with_timezone(&tz).date_naive();
        let first = today - TimeDelta::days(SPARK_DAYS as i64 - 1);
        let mut days = vec![0i64; SPARK_DAYS];
        let Some(jobs) = self.jobs.get(ibge) else {
            return days;
        };
        for c in jobs.values().flat_map(|j| j.commits.iter()) {
            let day: NaiveDate = c.at.with_timezone(&tz).date_naive();
            if let Ok(i) = usize::try_from((day - first).num_days())
                && let Some(slot) = days.get_mut(i)
            {
                *slot = slot.saturating_add(i64::try_from(c.rows).unwrap_or(i64::MAX));
            }
        }
        days
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: i64, state: &str, hours: i64, rows: i64) -> Seen {
        let at = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .to_utc()
            + TimeDelta::hours(hours);
        Seen {
            id,
            ibge: "3550308".into(),
            job: "visitas".into(),
            state: state.into(),
            started_at: at,
            finished_at: (state != "open").then_some(at),
            rows,
            error: (state == "failed").then(|| "boom".into()),
        }
    }

    #[test]
    fn applying_twice_changes_nothing_and_order_follows_ids() {
        let mut m = Memory::default();
        for t in [seen(1, "committed", -48, 10), seen(2, "committed", -24, 12)] {
            m.apply(&t);
            m.apply(&t);
        }
        m.apply(&seen(3, "failed", -1, 0));
        // An older transmission read late does not replace the newest.
        m.apply(&seen(2, "committed", -24, 12));
        let facts = m.jobs_of("3550308").unwrap()["visitas"].facts("visitas");
        assert_eq!(facts.latest_rows, Some(12));
        assert_eq!(facts.row_history, vec![10]);
        assert_eq!(facts.last_attempt.unwrap().outcome, Outcome::Failed);
        let (at, rows) = m.last_success("3550308");
        assert_eq!(rows, Some(12));
        assert_eq!(at, Some(seen(2, "committed", -24, 0).started_at));
    }

    #[test]
    fn daily_rows_by_local_day_and_pruning() {
        let mut m = Memory::default();
        m.apply(&seen(1, "committed", -24 * 40, 99));
        m.apply(&seen(2, "committed", -24, 5));
        m.apply(&seen(3, "committed", 0, 7));
        let now = seen(3, "committed", 0, 0).started_at;
        let days = m.daily_rows("3550308", Tz::America__Sao_Paulo, now);
        assert_eq!(days.len(), SPARK_DAYS);
        assert_eq!(days[SPARK_DAYS - 1], 7);
        assert_eq!(days[SPARK_DAYS - 2], 5);
        assert_eq!(days.iter().sum::<i64>(), 12);
        m.prune(now);
        let facts = m.jobs_of("3550308").unwrap()["visitas"].facts("visitas");
        assert_eq!(facts.row_history, vec![5]);
    }
}
