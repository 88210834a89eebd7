//! The campaign's upsert job: `grande_up` reads `id, payload, valor,
//! atualizado` of `grande` into `grande_upsert`, merged by `id`, from the
//! committed watermark (`atualizado`, set by every insert and update)
//! minus a 2 s lookback. Local jobs have no reconcile schedule, so rows
//! the rounds delete stay in the target (only the first, full run ever
//! reconciled).
//!
//! After each round: every source row is in the target with the same
//! values (COPY text of the four columns, in UTC), every target row the
//! source lacks is one a round deleted (its id is below the source's
//! largest id: ids are never reused), and the job's committed watermark
//! and newest snapshot never moved backwards, whatever the fault did.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Utc};

use transmissor_tests::stack::{Job, copy_dump};

use super::campaign::Campaign;

pub(super) const UPSERT_QUERY: &str = "SELECT id, payload, valor, atualizado FROM grande";

/// The upsert job of the agent's config.
pub(super) fn job() -> Job {
    Job::upsert(
        "grande_up",
        "grande_upsert",
        UPSERT_QUERY,
        &["id"],
        "atualizado",
        "2s",
    )
}

/// The job's committed (watermark, newest snapshot) seen so far.
pub(super) type Committed = Option<(Option<DateTime<Utc>>, DateTime<Utc>)>;

impl Campaign {
    /// The checks above; `last` is what the previous check saw, updated.
    pub async fn check_upsert(&self, last: &mut Committed) -> Result<Vec<String>> {
        let analytic = self.stack.analytic_client().await?;
        let src = self.stack.source.connect(&self.m.db).await?;
        analytic.batch_execute("SET TimeZone = 'UTC'").await?;
        src.batch_execute("SET TimeZone = 'UTC'").await?;
        let ibge = self.m.ibge.as_str();
        let lines = |dump: Vec<u8>| -> BTreeMap<i64, String> {
            String::from_utf8_lossy(&dump)
                .lines()
                .filter_map(|l| Some((l.split('\t').next()?.parse().ok()?, l.to_string())))
                .collect()
        };
        let source = lines(copy_dump(&src, &format!("{UPSERT_QUERY} ORDER BY id")).await?);
        let target = lines(
            copy_dump(
                &analytic,
                &format!(
                    "SELECT id, payload, valor, atualizado FROM analytic.grande_upsert \
                     WHERE _ibge = '{ibge}' ORDER BY id"
                ),
            )
            .await?,
        );
        let mut problems = Vec::new();
        let differ: Vec<&i64> = source
            .iter()
            .filter(|(id, line)| target.get(id) != Some(line))
            .map(|(id, _)| id)
            .collect();
        if !differ.is_empty() {
            problems.push(format!(
                "upsert target: {} of {} source rows missing or different (first ids {:?})",
                differ.len(),
                source.len(),
                &differ[..differ.len().min(5)]
            ));
        }
        let max_source = source.keys().next_back().copied().unwrap_or(0);
        let unknown: Vec<&i64> = target
            .keys()
            .filter(|id| !source.contains_key(id) && **id > max_source)
            .collect();
        if !unknown.is_empty() {
            problems.push(format!(
                "upsert target holds ids the source never had: {:?}",
                &unknown[..unknown.len().min(5)]
            ));
        }
        let row = analytic
            .query_opt(
                "SELECT watermark, snapshot_at FROM transmissor.watermarks \
                 WHERE ibge = $1 AND job = 'grande_up'",
                &[&ibge],
            )
            .await?;
        let now: Committed = row.map(|r| {
            let t = |i| {
                r.get::<_, Option<std::time::SystemTime>>(i)
                    .map(DateTime::<Utc>::from)
            };
            (t(0), t(1).unwrap_or_default())
        });
        match (&last, &now) {
            (Some(_), None) => problems.push("the upsert job's watermark row vanished".into()),
            (Some((w0, s0)), Some((w1, s1))) => {
                if w1 < w0 {
                    problems.push(format!(
                        "the upsert watermark moved backwards: {w0:?} → {w1:?}"
                    ));
                }
                if s1 < s0 {
                    problems.push(format!(
                        "the upsert job's newest snapshot moved backwards: {s0} → {s1}"
                    ));
                }
            }
            _ => {}
        }
        *last = now;
        Ok(problems)
    }
}
