//! The checks after each round: the targets against the source, byte for
//! byte, the control schema, the status and what must not be left behind.

use std::collections::BTreeSet;

use anyhow::Result;
use tokio_postgres::Client;

use transmissor_proto::names::quote_ident;
use transmissor_tests::stack::{Municipality, copy_dump};

use super::campaign::{Campaign, LIST_QUERY};
use super::kinds::{SchemaRound, busy_refusals};
use super::source::{self, SchemaChange};

/// Hash partitions of a snapshot target (`[load] target_partitions`).
const PARTITIONS: usize = 16;
/// Columns every target has, set by the collector.
const COLLECTOR_COLUMNS: [&str; 2] = ["_ibge", "_transmission_id"];

impl Campaign {
    /// Every check of the targets and the control schema; `after` is the
    /// highest transmission id before the round.
    pub async fn check_targets(&self, after: i64) -> Result<Vec<String>> {
        let analytic = self.stack.analytic_client().await?;
        let src = self.stack.source.connect(&self.m.db).await?;
        let mut problems = self.check_snapshot(&analytic, &src).await?;
        problems.extend(self.check_slice_row(&analytic).await?);
        problems.extend(check_round_appends(&analytic, &src, after).await?);
        problems.extend(check_append_totals(&analytic).await?);
        problems.extend(check_leftovers(&analytic).await?);
        Ok(problems)
    }

    /// The slice equals the source over the source's columns; target
    /// columns the source lacks are NULL in it; the registry, the target's
    /// columns and the status's `missing_columns` agree.
    async fn check_snapshot(&self, analytic: &Client, src: &Client) -> Result<Vec<String>> {
        let source_cols = source::columns(src, "public", "grande").await?;
        let target_cols: Vec<(String, String)> = source::columns(analytic, "analytic", "grande")
            .await?
            .into_iter()
            .filter(|(n, _)| !COLLECTOR_COLUMNS.contains(&n.as_str()))
            .collect();
        let mut problems = Vec::new();
        for (name, ty) in &source_cols {
            match target_cols.iter().find(|(n, _)| n == name) {
                None => problems.push(format!("the target has no column {name} ({ty})")),
                Some((_, t)) if t != ty => problems.push(format!(
                    "column {name} is {t} in the target but {ty} in the source"
                )),
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            return Ok(problems);
        }
        let list: Vec<String> = source_cols.iter().map(|(n, _)| quote_ident(n)).collect();
        let list = list.join(", ");
        let s = copy_dump(src, &format!("SELECT {list} FROM grande ORDER BY id")).await?;
        let ibge = self.m.ibge.as_str();
        let t = copy_dump(
            analytic,
            &format!("SELECT {list} FROM analytic.grande WHERE _ibge = '{ibge}' ORDER BY id"),
        )
        .await?;
        if s != t {
            let (sv, tv) = (
                source::source_state(src).await?,
                visible_slice(analytic, &self.m).await?,
            );
            problems.push(format!(
                "snapshot slice differs from the source over its {} columns: target (count, sum) \
                 {tv:?}, {} bytes; source {sv:?}, {} bytes; first difference at line {}",
                source_cols.len(),
                t.len(),
                s.len(),
                first_diff_line(&s, &t)
            ));
        }

        let gone: Vec<&str> = target_cols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !source_cols.iter().any(|(s, _)| s == n))
            .collect();
        if !gone.is_empty() {
            let quoted: Vec<String> = gone.iter().map(|n| quote_ident(n)).collect();
            let non_null: i64 = analytic
                .query_one(
                    &format!(
                        "SELECT count(*) FROM analytic.grande WHERE _ibge = $1 AND num_nonnulls({}) > 0",
                        quoted.join(", ")
                    ),
                    &[&ibge],
                )
                .await?
                .get(0);
            if non_null > 0 {
                problems.push(format!(
                    "{non_null} rows of the slice have values in columns the source no longer has ({gone:?})"
                ));
            }
        }

        let registered: Vec<String> = analytic
            .query(
                "SELECT name FROM transmissor.target_columns WHERE target = 'grande' ORDER BY position",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let actual: Vec<String> = target_cols.iter().map(|(n, _)| n.clone()).collect();
        if registered != actual {
            problems.push(format!(
                "transmissor.target_columns lists {registered:?} but analytic.grande has {actual:?}"
            ));
        }
        problems.extend(self.check_status(&gone).await?);
        Ok(problems)
    }

    /// The status's `missing_columns` of the municipality's snapshot job
    /// are exactly `gone` (the target columns the source no longer sends).
    async fn check_status(&self, gone: &[&str]) -> Result<Vec<String>> {
        let pool = self.stack.collector_pool().await?;
        let rows = transmissor_collector::status::last_transmissions(&pool).await;
        pool.close().await;
        let row = rows?
            .into_iter()
            .find(|r| r.ibge == self.m.ibge.as_str() && r.job == "grande");
        let Some(row) = row else {
            return Ok(vec!["no status row for the snapshot job".into()]);
        };
        let listed: BTreeSet<&str> = row.missing_columns.iter().map(String::as_str).collect();
        let expected: BTreeSet<&str> = gone.iter().copied().collect();
        if listed == expected {
            return Ok(Vec::new());
        }
        Ok(vec![format!(
            "the status lists missing columns {:?}; the source no longer has {expected:?}",
            row.missing_columns
        )])
    }

    /// The municipality's `target_slices` row, and every row of its slice,
    /// point at the last committed snapshot transmission.
    async fn check_slice_row(&self, analytic: &Client) -> Result<Vec<String>> {
        let ibge = self.m.ibge.as_str();
        let last: Option<i64> = analytic
            .query_opt(
                "SELECT id FROM transmissor.transmissions WHERE job = 'grande' AND ibge = $1 \
                 AND state = 'committed' ORDER BY finished_at DESC, id DESC LIMIT 1",
                &[&ibge],
            )
            .await?
            .map(|r| r.get(0));
        let slice: Option<Option<i64>> = analytic
            .query_opt(
                "SELECT transmission_id FROM transmissor.target_slices \
                 WHERE target = 'grande' AND ibge = $1",
                &[&ibge],
            )
            .await?
            .map(|r| r.get(0));
        let mut problems = Vec::new();
        if slice != Some(last) {
            let points = match slice {
                None => "is missing".to_string(),
                Some(None) => "points at no transmission".to_string(),
                Some(Some(id)) => format!("points at transmission {id}"),
            };
            problems.push(format!(
                "the municipality's target_slices row {points}; the last committed snapshot \
                 transmission is {last:?}"
            ));
        }
        let in_rows: Vec<i64> = analytic
            .query(
                "SELECT DISTINCT _transmission_id FROM analytic.grande WHERE _ibge = $1",
                &[&ibge],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if in_rows.iter().any(|id| Some(*id) != last) {
            problems.push(format!(
                "the slice's rows come from transmissions {in_rows:?}; the last committed is {last:?}"
            ));
        }
        Ok(problems)
    }

    /// The snapshot transmission of the corrupted run ended aborted with the
    /// corruption as its reason.
    pub async fn check_corruption_noticed(&self, run: &str) -> Result<Vec<String>> {
        let analytic = self.stack.analytic_client().await?;
        let row = analytic
            .query_opt(
                "SELECT state, coalesce(error, '') FROM transmissor.transmissions \
                 WHERE run_id::text = $1 AND job = 'grande'",
                &[&run],
            )
            .await?;
        let Some(row) = row else {
            return Ok(vec![format!("no transmission for the corrupted run {run}")]);
        };
        let (state, error): (String, String) = (row.get(0), row.get(1));
        if state == "aborted" && error.contains("corrupted") {
            return Ok(Vec::new());
        }
        Ok(vec![format!(
            "the corrupted run's snapshot transmission is {state} ({error}), not aborted for corruption"
        )])
    }

    /// A schema round's own signs: an added column is in the target,
    /// recorded with a snapshot transmission of this round; a dropped one
    /// stays in the target. Returns a note for the report line (how long
    /// the addition waited for the analyst) and the problems.
    pub async fn check_schema_round(
        &self,
        s: &SchemaRound,
        after: i64,
    ) -> Result<(String, Vec<String>)> {
        let analytic = self.stack.analytic_client().await?;
        let target = source::columns(&analytic, "analytic", "grande").await?;
        let busy = busy_refusals(&self.stack.dir, s.round);
        let busy = if busy > 0 {
            format!(", Begin refused busy {busy}x")
        } else {
            String::new()
        };
        let mut problems = Vec::new();
        let name = match &s.change {
            SchemaChange::Add { name, ty, .. } => {
                match target.iter().find(|(n, _)| n == name) {
                    None => problems.push(format!("the target did not get column {name}")),
                    Some((_, t)) if t != ty => {
                        problems.push(format!("column {name} was added as {t}, not {ty}"))
                    }
                    Some(_) => {}
                }
                name
            }
            SchemaChange::Drop { name } => {
                if !target.iter().any(|(n, _)| n == name) {
                    problems.push(format!(
                        "the target lost column {name} (other municipalities' rows may have it)"
                    ));
                }
                return Ok((busy, problems));
            }
        };
        let row = analytic
            .query_opt(
                "SELECT c.added_by, t.id, t.job, t.state, \
                   extract(epoch FROM c.added_at)::float8 \
                 FROM transmissor.target_columns c \
                 LEFT JOIN transmissor.transmissions t ON t.id = c.added_by \
                 WHERE c.target = 'grande' AND c.name = $1",
                &[name],
            )
            .await?;
        let Some(row) = row else {
            problems.push(format!("transmissor.target_columns has no row for {name}"));
            return Ok((busy, problems));
        };
        let (by, id, job, state, added_at): (
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            f64,
        ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        match (by, id, job.as_deref()) {
            (None, ..) => problems.push(format!("column {name} is recorded without added_by")),
            (Some(by), None, _) => problems.push(format!(
                "column {name} is recorded as added by transmission {by}, which does not exist"
            )),
            (Some(by), Some(_), job) if by <= after || job != Some("grande") => {
                problems.push(format!(
                    "column {name} is recorded as added by transmission {by} (job {job:?}), \
                     not by a snapshot transmission of this round (ids > {after})"
                ))
            }
            _ => {}
        }
        let note = format!(
            "; added by {} ({}) {:.2}s after the analyst's BEGIN{busy}",
            by.unwrap_or_default(),
            state.unwrap_or_default(),
            added_at - s.analyst_began
        );
        Ok((note, problems))
    }
}

/// `(count, sum(id))` of the municipality's visible snapshot slice.
pub(super) async fn visible_slice(analytic: &Client, m: &Municipality) -> Result<(i64, i64)> {
    let r = analytic
        .query_one(
            "SELECT count(*), coalesce(sum(id), 0)::int8 FROM analytic.grande WHERE _ibge = $1",
            &[&m.ibge.as_str()],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// Every append transmission committed after `after` holds exactly the
/// source's list (the source does not change within a round); at least one.
async fn check_round_appends(analytic: &Client, src: &Client, after: i64) -> Result<Vec<String>> {
    let ids: Vec<i64> = analytic
        .query(
            "SELECT id FROM transmissor.transmissions WHERE job = 'lista' AND state = 'committed' \
             AND id > $1 ORDER BY id",
            &[&after],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.is_empty() {
        return Ok(vec!["no append transmission committed".into()]);
    }
    let list = copy_dump(src, &format!("{LIST_QUERY} ORDER BY id")).await?;
    let mut problems = Vec::new();
    for id in ids {
        let q = format!(
            "SELECT id, payload FROM analytic.grande_lista WHERE _transmission_id = {id} ORDER BY id"
        );
        let got = copy_dump(analytic, &q).await?;
        if got != list {
            problems.push(format!(
                "append transmission {id} differs from the source list: {} vs {} bytes, first difference at line {}",
                got.len(),
                list.len(),
                first_diff_line(&list, &got)
            ));
        }
    }
    Ok(problems)
}

/// Rows per transmission in the append target equal the committed
/// transmissions' rows: none doubled, none partial, none from failed ones.
async fn check_append_totals(analytic: &Client) -> Result<Vec<String>> {
    let in_target = append_counts(analytic).await?;
    let committed = committed_appends(analytic).await?;
    if in_target == committed {
        return Ok(Vec::new());
    }
    let extra: Vec<_> = in_target.difference(&committed).collect();
    let missing: Vec<_> = committed.difference(&in_target).collect();
    Ok(vec![format!(
        "append target (transmission, rows) differ from the committed transmissions: \
         in the target only {extra:?}; committed only {missing:?}"
    )])
}

async fn append_counts(analytic: &Client) -> Result<BTreeSet<(i64, i64)>> {
    let rows = analytic
        .query(
            "SELECT _transmission_id, count(*) FROM analytic.grande_lista GROUP BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `(transmission, rows)` of every committed append transmission.
pub(super) async fn committed_appends(analytic: &Client) -> Result<BTreeSet<(i64, i64)>> {
    let rows = analytic
        .query(
            "SELECT id, rows FROM transmissor.transmissions WHERE job = 'lista' AND state = 'committed'",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// No open transmission, no staging table; `transmissor_parts` holds the
/// hash partitions of `analytic.grande` and nothing else.
async fn check_leftovers(analytic: &Client) -> Result<Vec<String>> {
    let count = |sql: &'static str| async move {
        analytic
            .query_one(sql, &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    };
    let open = count("SELECT count(*) FROM transmissor.transmissions WHERE state = 'open'").await?;
    let staging =
        count("SELECT count(*) FROM pg_tables WHERE schemaname = 'transmissor_staging'").await?;
    let mut problems = Vec::new();
    if open > 0 {
        problems.push(format!("{open} transmission(s) left open"));
    }
    if staging > 0 {
        problems.push(format!("{staging} staging table(s) left"));
    }
    let partitions: BTreeSet<String> = analytic
        .query(
            "SELECT n.nspname || '.' || c.relname FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE i.inhparent = 'analytic.grande'::regclass",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: BTreeSet<String> = (0..PARTITIONS)
        .map(|i| format!("transmissor_parts.grande_p{i:03}"))
        .collect();
    if partitions != expected {
        let extra: Vec<_> = partitions.difference(&expected).collect();
        let missing: Vec<_> = expected.difference(&partitions).collect();
        problems.push(format!(
            "analytic.grande has {} partitions (expected the {PARTITIONS} hash partitions): \
             unexpected {extra:?}, missing {missing:?}",
            partitions.len()
        ));
    }
    // The upsert target's own 16 partitions are the only other tables.
    let allowed: Vec<String> = expected
        .iter()
        .cloned()
        .chain((0..PARTITIONS).map(|i| format!("transmissor_parts.grande_upsert_p{i:03}")))
        .collect();
    let others: Vec<String> = analytic
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'transmissor_parts' \
             AND 'transmissor_parts.' || tablename <> ALL($1) ORDER BY 1",
            &[&allowed],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !others.is_empty() {
        problems.push(format!(
            "transmissor_parts holds tables that are not partitions of analytic.grande or analytic.grande_upsert: {others:?}"
        ));
    }
    Ok(problems)
}

fn first_diff_line(a: &[u8], b: &[u8]) -> usize {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    a[..at].iter().filter(|&&c| c == b'\n').count() + 1
}
