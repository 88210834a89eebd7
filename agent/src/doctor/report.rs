//! The checklist's result: printed for people (one line per item, its fix
//! under it), as JSON for machines, reduced to an exit code, and summed up
//! for the collector ([`summary`], kept in the state directory until the
//! next heartbeat carries it).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use prost::Message;
use serde::Serialize;

use transmissor_proto::pb;

use super::fix::FixContext;
use super::item::{Item, Outcome};
use super::lang::Lang;

/// Everything one doctor run found, in checklist order.
#[derive(Debug, Clone)]
pub struct Report {
    pub ran_at: DateTime<Utc>,
    pub items: Vec<Item>,
    pub fix: FixContext,
    /// The agent's state directory, when the config could be read: where
    /// the summary is kept for the heartbeat.
    pub state_dir: Option<PathBuf>,
}

/// Counts per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pass: u32,
    pub warn: u32,
    pub fail: u32,
    pub skip: u32,
}

#[derive(Serialize)]
struct JsonItem<'a> {
    check: super::item::Check,
    outcome: Outcome,
    code: &'a str,
    title: &'a str,
    message: String,
    fix: Option<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    version: u32,
    ran_at: DateTime<Utc>,
    lang: &'static str,
    worst: Outcome,
    exit_code: u8,
    counts: Counts,
    items: Vec<JsonItem<'a>>,
}

impl Report {
    /// Items sorted by check, keeping each check's items in order.
    pub fn new(
        ran_at: DateTime<Utc>,
        mut items: Vec<Item>,
        fix: FixContext,
        state_dir: Option<PathBuf>,
    ) -> Self {
        items.sort_by_key(|i| i.check);
        Self {
            ran_at,
            items,
            fix,
            state_dir,
        }
    }

    pub fn worst(&self) -> Outcome {
        self.items
            .iter()
            .map(Item::outcome)
            .max()
            .unwrap_or(Outcome::Pass)
    }

    /// 0 when everything passed (or was not checked), 1 with warnings, 2
    /// with a failure.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Outcome::Skip | Outcome::Pass => 0,
            Outcome::Warn => 1,
            Outcome::Fail => 2,
        }
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for i in &self.items {
            match i.outcome() {
                Outcome::Pass => c.pass += 1,
                Outcome::Warn => c.warn += 1,
                Outcome::Fail => c.fail += 1,
                Outcome::Skip => c.skip += 1,
            }
        }
        c
    }

    /// The items of one check.
    pub fn of(&self, check: super::item::Check) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.check == check)
    }

    /// For people: `[FALHA] title: message`, then `→ fix`.
    pub fn render(&self, lang: Lang) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "transmissor-agent doctor {} — {}\n\n",
            env!("CARGO_PKG_VERSION"),
            self.ran_at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
        for item in &self.items {
            let label = format!("[{}]", item.outcome().label(lang));
            out.push_str(&format!(
                "{label:<17} {}: {}\n",
                item.check.title(lang),
                item.finding.message(lang)
            ));
            if let Some(fix) = item.finding.fix(lang, &self.fix) {
                out.push_str(&format!("{:<17} → {fix}\n", ""));
            }
        }
        let c = self.counts();
        out.push('\n');
        out.push_str(&match lang {
            Lang::Pt => format!(
                "Resultado: ok {}, avisos {}, falhas {}, não verificados {} (código de saída {}).\n",
                c.pass,
                c.warn,
                c.fail,
                c.skip,
                self.exit_code()
            ),
            Lang::En => format!(
                "Result: passed {}, warnings {}, failed {}, not checked {} (exit code {}).\n",
                c.pass,
                c.warn,
                c.fail,
                c.skip,
                self.exit_code()
            ),
        });
        out
    }

    /// For machines (`--json`): ids and codes are stable, texts in `lang`.
    pub fn json(&self, lang: Lang) -> String {
        let report = JsonReport {
            version: 1,
            ran_at: self.ran_at,
            lang: lang.code(),
            worst: self.worst(),
            exit_code: self.exit_code(),
            counts: self.counts(),
            items: self
                .items
                .iter()
                .map(|i| JsonItem {
                    check: i.check,
                    outcome: i.outcome(),
                    code: i.finding.code(),
                    title: i.check.title(lang),
                    message: i.finding.message(lang),
                    fix: i.finding.fix(lang, &self.fix),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&report).unwrap_or_default()
    }

    /// What the collector is told: counts and the checks that did not pass.
    pub fn summary(&self) -> pb::DoctorSummary {
        let outcome = |o: Outcome| match o {
            Outcome::Skip | Outcome::Pass => pb::DoctorOutcome::Pass,
            Outcome::Warn => pb::DoctorOutcome::Warn,
            Outcome::Fail => pb::DoctorOutcome::Fail,
        } as i32;
        let c = self.counts();
        let mut problems: Vec<pb::DoctorProblem> = Vec::new();
        for i in self.items.iter().filter(|i| i.outcome() >= Outcome::Warn) {
            let p = pb::DoctorProblem {
                check: i.check.id().to_string(),
                outcome: outcome(i.outcome()),
                code: i.finding.code().to_string(),
            };
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
        pb::DoctorSummary {
            ran_at_unix_ms: self.ran_at.timestamp_millis(),
            worst: outcome(self.worst()),
            passed: c.pass,
            warnings: c.warn,
            failures: c.fail,
            problems,
        }
    }
}

/// The summary's file name in the state directory.
const SUMMARY_FILE: &str = "doctor.pb";

/// Where the last summary waits for the heartbeat.
pub fn summary_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SUMMARY_FILE)
}

/// Keeps `summary` for the heartbeat: written whole (temp file, rename),
/// 0600, owned like the state directory (the doctor may run as root, the
/// agent as its own user). The state directory is the agent user's, so
/// nothing planted there is followed ([`crate::private_fs::replace_file_in`]).
pub fn save_summary(state_dir: &Path, summary: &pb::DoctorSummary) -> std::io::Result<()> {
    crate::private_fs::replace_file_in(state_dir, SUMMARY_FILE, &summary.encode_to_vec())
}

/// The last summary kept, if any (a broken file counts as none).
pub fn load_summary(state_dir: &Path) -> Option<pb::DoctorSummary> {
    let bytes = std::fs::read(summary_path(state_dir)).ok()?;
    pb::DoctorSummary::decode(bytes.as_slice()).ok()
}
