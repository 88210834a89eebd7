//! One job of a plan: what to extract, where it lands, how it is loaded,
//! when it runs, on which PEC versions, and what happens to personal data.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use transmissor_proto::names::check_plain;

use crate::doc::{DocError, Source};
use crate::schedule::{MAX_JITTER, Schedule};
use crate::version::{PecVersion, VersionRange};

/// Largest `sql` text of one job.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// Longest source column name (PostgreSQL's identifier limit).
pub const MAX_COLUMN_BYTES: usize = 63;

/// Longest upsert lookback.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(30 * 24 * 3600);

/// A validated job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanJob {
    /// Plain lowercase name, unique in the plan.
    pub name: String,
    /// Plain lowercase table name on the analytic server.
    pub target: String,
    pub mode: JobMode,
    pub sql: String,
    pub schedule: Schedule,
    /// PEC versions the job runs on; `None` for any.
    pub pec_version: Option<VersionRange>,
    /// Personal-data policy by source column name; columns not listed are sent.
    pub columns: BTreeMap<String, ColumnPolicy>,
}

impl PlanJob {
    /// Whether the job runs on an installation of PEC version `pec`: always
    /// without a range; with a range, only on a known version inside it.
    pub fn runs_on(&self, pec: Option<&PecVersion>) -> bool {
        match (&self.pec_version, pec) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(range), Some(v)) => range.contains(v),
        }
    }
}

/// How the rows are loaded on the analytic server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobMode {
    /// The whole result replaces the municipality's previous rows.
    Snapshot,
    /// The rows are added to what is there.
    Append,
    /// Rows whose `watermark` is after the committed watermark minus
    /// `lookback` replace the municipality's rows with the same `key`.
    Upsert(Upsert),
}

/// An incremental job: what identifies a row, what says it changed, and
/// when the full key set is compared to find rows the source deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upsert {
    /// Result columns that identify a row (never NULL, unique).
    pub key: Vec<String>,
    /// A `timestamp` or `timestamptz` result column set when a row is
    /// written (e.g. a last-modified time).
    pub watermark: String,
    /// How far before the committed watermark each run reads again: covers
    /// writers' clock skew and the time between a writer's start and its
    /// first write (see ARCHITECTURE.md, "the watermark").
    pub lookback: Duration,
    /// When a run extracts the job in full, so that the collector removes
    /// the municipality's rows the source no longer has. `None`: only the
    /// first run (and runs that could not learn the committed watermark)
    /// are full.
    pub reconcile: Option<Schedule>,
}

impl JobMode {
    pub fn name(&self) -> &'static str {
        match self {
            JobMode::Snapshot => "snapshot",
            JobMode::Append => "append",
            JobMode::Upsert { .. } => "upsert",
        }
    }
}

impl fmt::Display for JobMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happens to one source column that holds personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ColumnPolicy {
    /// Sent as is.
    Send,
    /// Replaced by a keyed pseudonym before it leaves the municipality.
    Pseudonymise,
    /// Never leaves the municipality.
    Drop,
}

impl ColumnPolicy {
    pub fn name(&self) -> &'static str {
        match self {
            ColumnPolicy::Send => "send",
            ColumnPolicy::Pseudonymise => "pseudonymise",
            ColumnPolicy::Drop => "drop",
        }
    }
}

impl fmt::Display for ColumnPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
    name: Spanned<String>,
    target: Spanned<String>,
    mode: Spanned<String>,
    sql: Spanned<String>,
    schedule: Spanned<RawSchedule>,
    pec_version: Option<Spanned<RawRange>>,
    #[serde(default)]
    columns: BTreeMap<String, Spanned<String>>,
    key: Option<Spanned<Vec<String>>>,
    watermark: Option<Spanned<String>>,
    lookback: Option<Spanned<String>>,
    reconcile: Option<Spanned<RawSchedule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: Spanned<String>,
    jitter: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    min: Option<Spanned<String>>,
    below: Option<Spanned<String>>,
}

impl RawJob {
    pub(crate) fn name(&self) -> &Spanned<String> {
        &self.name
    }

    /// Validates one job; `at` is its field path (`jobs[2]`).
    pub(crate) fn validate(self, src: &Source<'_>, at: &str) -> Result<PlanJob, DocError> {
        let f = |field: &str| format!("{at}.{field}");
        check_plain("job name", self.name.get_ref())
            .map_err(|e| src.err(self.name.span(), f("name"), e.to_string()))?;
        check_plain("target", self.target.get_ref())
            .map_err(|e| src.err(self.target.span(), f("target"), e.to_string()))?;

        let sql = self.sql.get_ref();
        let sql_err = |m: &str| src.err(self.sql.span(), f("sql"), m);
        if sql.trim().is_empty() {
            return Err(sql_err("must not be empty"));
        }
        if sql.len() > MAX_SQL_BYTES {
            return Err(sql_err("is longer than 1 MiB"));
        }
        if sql.contains('\0') {
            return Err(sql_err("must not contain a NUL character"));
        }

        let schedule = schedule(src, &self.schedule, &f("schedule"))?;
        let pec_version = match &self.pec_version {
            None => None,
            Some(r) => Some(range(src, r, &f("pec_version"))?),
        };

        let mut columns = BTreeMap::new();
        for (column, policy) in &self.columns {
            let field = format!("{at}.columns.{column}");
            check_column(column).map_err(|m| src.err(policy.span(), &field, m))?;
            let p = match policy.get_ref().as_str() {
                "send" => ColumnPolicy::Send,
                "pseudonymise" => ColumnPolicy::Pseudonymise,
                "drop" => ColumnPolicy::Drop,
                other => {
                    return Err(src.err(
                        policy.span(),
                        &field,
                        format!("{other:?} is not one of send, pseudonymise, drop"),
                    ));
                }
            };
            columns.insert(column.clone(), p);
        }

        let mode = self.mode(src, at)?;
        if let JobMode::Upsert(u) = &mode {
            // The key and the watermark must reach the collector as they are.
            for column in u.key.iter().chain([&u.watermark]) {
                match columns.get(column) {
                    Some(ColumnPolicy::Drop) => {
                        return Err(src.err(
                            self.mode.span(),
                            format!("{at}.columns.{column}"),
                            format!("column {column:?} is the upsert key or watermark and cannot be dropped"),
                        ));
                    }
                    Some(ColumnPolicy::Pseudonymise) if *column == u.watermark => {
                        return Err(src.err(
                            self.mode.span(),
                            format!("{at}.columns.{column}"),
                            format!("column {column:?} is the watermark, a time the collector compares: it cannot be pseudonymised"),
                        ));
                    }
                    _ => {}
                }
            }
        }

        Ok(PlanJob {
            name: self.name.into_inner(),
            target: self.target.into_inner(),
            mode,
            sql: self.sql.into_inner(),
            schedule,
            pec_version,
            columns,
        })
    }

    fn mode(&self, src: &Source<'_>, at: &str) -> Result<JobMode, DocError> {
        let f = |field: &str| format!("{at}.{field}");
        let upsert_only = [
            ("key", self.key.as_ref().map(Spanned::span)),
            ("watermark", self.watermark.as_ref().map(Spanned::span)),
            ("lookback", self.lookback.as_ref().map(Spanned::span)),
            ("reconcile", self.reconcile.as_ref().map(Spanned::span)),
        ];
        match self.mode.get_ref().as_str() {
            m @ ("snapshot" | "append") => {
                if let Some((field, Some(span))) = upsert_only.iter().find(|(_, s)| s.is_some()) {
                    return Err(src.err(
                        span.clone(),
                        f(field),
                        format!("{field} is only for mode \"upsert\", not {m:?}"),
                    ));
                }
                Ok(if m == "snapshot" {
                    JobMode::Snapshot
                } else {
                    JobMode::Append
                })
            }
            "upsert" => {
                let needs = |field: &str| {
                    src.err(
                        self.mode.span(),
                        f("mode"),
                        format!("mode \"upsert\" needs {field}"),
                    )
                };
                let key = self.key.as_ref().ok_or_else(|| needs("key"))?;
                let watermark = self.watermark.as_ref().ok_or_else(|| needs("watermark"))?;
                let lookback = self.lookback.as_ref().ok_or_else(|| needs("lookback"))?;
                if key.get_ref().is_empty() {
                    return Err(src.err(key.span(), f("key"), "must name at least one column"));
                }
                for (i, column) in key.get_ref().iter().enumerate() {
                    check_column(column)
                        .map_err(|m| src.err(key.span(), f(&format!("key[{i}]")), m))?;
                    if key.get_ref()[..i].contains(column) {
                        return Err(src.err(
                            key.span(),
                            f(&format!("key[{i}]")),
                            format!("column {column:?} is listed twice"),
                        ));
                    }
                }
                check_column(watermark.get_ref())
                    .map_err(|m| src.err(watermark.span(), f("watermark"), m))?;
                let lookback_d = duration(lookback.get_ref())
                    .map_err(|m| src.err(lookback.span(), f("lookback"), m))?;
                if lookback_d > MAX_LOOKBACK {
                    return Err(src.err(
                        lookback.span(),
                        f("lookback"),
                        format!("{:?} is longer than the 30-day maximum", lookback.get_ref()),
                    ));
                }
                let reconcile = match &self.reconcile {
                    None => None,
                    Some(r) => Some(schedule(src, r, &f("reconcile"))?),
                };
                Ok(JobMode::Upsert(Upsert {
                    key: key.get_ref().clone(),
                    watermark: watermark.get_ref().clone(),
                    lookback: lookback_d,
                    reconcile,
                }))
            }
            other => Err(src.err(
                self.mode.span(),
                f("mode"),
                format!("{other:?} is not one of snapshot, append, upsert"),
            )),
        }
    }
}

fn schedule(src: &Source<'_>, raw: &Spanned<RawSchedule>, at: &str) -> Result<Schedule, DocError> {
    let raw = raw.get_ref();
    let jitter = match &raw.jitter {
        None => Duration::ZERO,
        Some(j) => {
            let field = format!("{at}.jitter");
            let d = duration(j.get_ref()).map_err(|m| src.err(j.span(), &field, m))?;
            if d > MAX_JITTER {
                return Err(src.err(
                    j.span(),
                    &field,
                    format!("{:?} is longer than the 12h maximum", j.get_ref()),
                ));
            }
            d
        }
    };
    Schedule::new(raw.cron.get_ref(), jitter).map_err(|e| {
        src.err(
            raw.cron.span(),
            format!("{at}.cron"),
            format!(
                "{:?} is not a valid cron expression: {e}",
                raw.cron.get_ref()
            ),
        )
    })
}

fn range(src: &Source<'_>, raw: &Spanned<RawRange>, at: &str) -> Result<VersionRange, DocError> {
    let bound = |b: &Option<Spanned<String>>, name: &str| -> Result<Option<PecVersion>, DocError> {
        match b {
            None => Ok(None),
            Some(s) => s
                .get_ref()
                .parse()
                .map(Some)
                .map_err(|e| src.err(s.span(), format!("{at}.{name}"), format!("{e}"))),
        }
    };
    let r = raw.get_ref();
    let range = VersionRange {
        min: bound(&r.min, "min")?,
        below: bound(&r.below, "below")?,
    };
    match (&range.min, &range.below) {
        (None, None) => Err(src.err(
            raw.span(),
            at,
            "give min, below or both (leave pec_version out to run on any version)",
        )),
        (Some(min), Some(below)) if min >= below => {
            Err(src.err(raw.span(), at, format!("min {min} must be below {below}")))
        }
        _ => Ok(range),
    }
}

/// Source column names: any case, as the source returns them.
fn check_column(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_COLUMN_BYTES || name.contains('\0') {
        Err(format!(
            "column {:?} must be 1 to 63 bytes without NUL",
            name.chars().take(80).collect::<String>()
        ))
    } else {
        Ok(())
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (e.g. \"45m\", \"2d\"): {e}"))
}
