//! The plan document: strict TOML, validated into typed values.
//!
//! ```toml
//! format = 1                         # only 1 is accepted
//! version = 42                       # positive, monotonic, at most 2^53, steps of at most 1,000,000
//! issued_at = 2026-11-30T12:00:00Z
//! expires_at = 2027-03-01T00:00:00Z  # after issued_at
//! scope = "all"                      # or ["3550308", "3304557"]
//! description = "optional free text"
//! personal_data = ["nu_pis", "ds_obs*"]  # optional: column-name patterns (a-z 0-9 _ *)
//!                                    # added to the reference list of personal data
//!
//! [[jobs]]
//! name = "atendimentos"
//! target = "tb_fat_atendimento_individual"
//! mode = "snapshot"                  # snapshot | append | upsert
//! sql = "SELECT ..."
//! schedule = { cron = "30 2 * * 1-5", jitter = "45m" }
//! pec_version = { min = "5.3.7", below = "5.5" }
//! # mode = "upsert" also needs:
//! # key = ["co_seq_fat_atd_ind"]      # result columns identifying a row
//! # watermark = "dt_atualizacao"      # timestamp(tz) result column set on write
//! # lookback = "2h"                   # re-read before the committed watermark
//! # reconcile = { cron = "0 3 * * 0" } # optional: full run, deletes reconciled
//! [jobs.columns]
//! no_cidadao = "drop"
//! nu_cpf_cidadao = "pseudonymise"
//! ```
//!
//! `[jobs.columns]` gives each source column holding personal data its
//! policy: `send` (as is), `pseudonymise` (the agent replaces the value by
//! the lowercase hex HMAC-SHA256 of its text, keyed by a secret only the
//! agent holds; the target column is `text`) or `drop` (the column never
//! leaves the municipal server). Every column the job returns whose name is
//! in the personal-data list (`personal_data.toml`, plus the plan's own
//! `personal_data` patterns), or whose value is computed from such a column
//! under any name ([`crate::lineage`]), must have a policy:
//! `transmissor-plan check`/`sign` refuse the plan otherwise
//! ([`crate::check_personal_data`]), and the agent fails such a job, on the
//! column names the database describes and on the lineage of the plan's
//! SQL, before extracting a row.
//!
//! A plan without jobs is valid: it stops every extraction it replaces.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;
use transmissor_proto::identity::Ibge;

use crate::doc::{DocError, Source};
use crate::increments::MAX_NUMBER;
use crate::job::{PlanJob, RawJob};
use crate::personal_data::{PersonalData, check_pattern};

/// The only plan format this version reads.
pub const PLAN_FORMAT: u32 = 1;

/// At most this many jobs in a plan.
pub const MAX_JOBS: usize = 200;

/// Largest plan document (the signed envelope has the same bound).
pub const MAX_PLAN_BYTES: usize = 4 << 20;

/// Errors of [`Plan::parse`]: each names the line and the field.
pub type PlanError = DocError;

/// A validated extraction plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub format: u32,
    pub version: u64,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub scope: Scope,
    pub description: Option<String>,
    /// Column-name patterns the plan adds to the reference list of
    /// personal data ([`crate::PersonalData`]).
    pub personal_data: Vec<String>,
    pub jobs: Vec<PlanJob>,
}

/// The municipalities a plan is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// 7-digit IBGE codes (check digit verified).
    Municipalities(BTreeSet<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    format: Spanned<i64>,
    version: Spanned<i64>,
    issued_at: Spanned<Datetime>,
    expires_at: Spanned<Datetime>,
    scope: Spanned<toml::Value>,
    description: Option<String>,
    #[serde(default)]
    personal_data: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    jobs: Vec<Spanned<RawJob>>,
}

impl Plan {
    /// Parses and validates a plan (UTF-8 TOML).
    pub fn parse(bytes: &[u8]) -> Result<Plan, PlanError> {
        let src = Source::new(bytes, MAX_PLAN_BYTES)?;
        let raw: RawPlan = src.decode()?;

        if *raw.format.get_ref() != i64::from(PLAN_FORMAT) {
            return Err(src.err(
                raw.format.span(),
                "format",
                format!(
                    "plan format {} is not supported: this version reads format {PLAN_FORMAT}",
                    raw.format.get_ref()
                ),
            ));
        }
        let version = u64::try_from(*raw.version.get_ref())
            .ok()
            .filter(|&v| v > 0 && v <= MAX_NUMBER)
            .ok_or_else(|| {
                src.err(
                    raw.version.span(),
                    "version",
                    format!(
                        "{} must be a positive integer of at most {MAX_NUMBER} (2^53)",
                        raw.version.get_ref()
                    ),
                )
            })?;
        let issued_at = src.datetime(&raw.issued_at, "issued_at")?;
        let expires_at = src.datetime(&raw.expires_at, "expires_at")?;
        if expires_at <= issued_at {
            return Err(src.err(
                raw.expires_at.span(),
                "expires_at",
                format!(
                    "{} must be after issued_at {}",
                    rfc3339(expires_at),
                    rfc3339(issued_at)
                ),
            ));
        }
        let scope = scope(&src, &raw.scope)?;
        let personal_data = personal_data(&src, raw.personal_data.as_ref())?;

        if raw.jobs.len() > MAX_JOBS {
            return Err(src.err(
                raw.jobs[MAX_JOBS].span(),
                format!("jobs[{MAX_JOBS}]"),
                format!("a plan holds at most {MAX_JOBS} jobs"),
            ));
        }
        let mut lines_by_name: BTreeMap<String, usize> = BTreeMap::new();
        let mut jobs = Vec::with_capacity(raw.jobs.len());
        for (i, job) in raw.jobs.into_iter().enumerate() {
            let at = format!("jobs[{i}]");
            let name = job.get_ref().name();
            let line = src.line(name.span().start);
            if let Some(first) = lines_by_name.insert(name.get_ref().clone(), line) {
                return Err(src.err(
                    name.span(),
                    format!("{at}.name"),
                    format!(
                        "job name {:?} is already used on line {first}",
                        name.get_ref()
                    ),
                ));
            }
            jobs.push(job.into_inner().validate(&src, &at)?);
        }

        Ok(Plan {
            format: PLAN_FORMAT,
            version,
            issued_at,
            expires_at,
            scope,
            description: raw.description,
            personal_data,
            jobs,
        })
    }

    /// Whether the plan is for the municipality `ibge` (7-digit code).
    pub fn applies_to(&self, ibge: &str) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Municipalities(codes) => codes.contains(ibge),
        }
    }

    /// Expired at and after `expires_at`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    pub fn job(&self, name: &str) -> Option<&PlanJob> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The personal-data list this plan's jobs are checked against: the
    /// reference list and the plan's own patterns.
    pub fn personal_data_list(&self) -> PersonalData {
        PersonalData::with_plan_patterns(&self.personal_data)
    }
}

fn personal_data(
    src: &Source<'_>,
    raw: Option<&Spanned<Vec<String>>>,
) -> Result<Vec<String>, DocError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut out: Vec<String> = Vec::new();
    for (i, p) in raw.get_ref().iter().enumerate() {
        let field = format!("personal_data[{i}]");
        let at = || {
            src.item_span("personal_data", i)
                .unwrap_or_else(|| raw.span())
        };
        check_pattern(p).map_err(|m| src.err(at(), &field, m))?;
        if out.contains(p) {
            return Err(src.err(at(), &field, format!("{p:?} is listed twice")));
        }
        out.push(p.clone());
    }
    Ok(out)
}

/// A UTC time as RFC 3339 (`2026-11-30T12:00:00Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn scope(src: &Source<'_>, raw: &Spanned<toml::Value>) -> Result<Scope, DocError> {
    let usage = "must be \"all\" or a list of 7-digit IBGE codes";
    match raw.get_ref() {
        toml::Value::String(s) if s == "all" => Ok(Scope::All),
        toml::Value::Array(items) => {
            if items.is_empty() {
                return Err(src.err(raw.span(), "scope", "must list at least one IBGE code"));
            }
            let mut codes = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let field = format!("scope[{i}]");
                let at = || src.item_span("scope", i).unwrap_or_else(|| raw.span());
                let code = item
                    .as_str()
                    .ok_or_else(|| src.err(at(), &field, "must be a string such as \"3550308\""))?;
                code.parse::<Ibge>()
                    .map_err(|e| src.err(at(), &field, e.to_string()))?;
                if !codes.insert(code.to_string()) {
                    return Err(src.err(at(), &field, format!("{code} is listed twice")));
                }
            }
            Ok(Scope::Municipalities(codes))
        }
        _ => Err(src.err(raw.span(), "scope", usage)),
    }
}
