//! Incremental upsert jobs: the key and watermark a transmission declares,
//! the committed watermark handed back at `Begin`, and the merge at commit.
//!
//! A commit of an upsert transmission, in the same database transaction as
//! its rows (after the municipality's slice is locked):
//! 1. **supersede**: a transmission whose snapshot is older than the job's
//!    newest committed one is not loaded (the newer one read every change
//!    it holds, from a lower bound at or before its own);
//! 2. **check the key**: no NULL, no duplicate in the staged rows;
//! 3. **merge**: a full transmission first deletes the slice's rows whose
//!    key it lacks (deleted at the source); then the slice's rows with a
//!    staged key are deleted and the staged rows inserted (an update is a
//!    delete and an insert: the columns an older PEC release lacks read
//!    NULL, as in snapshot targets);
//! 4. **watermark**: `GREATEST(committed, proven)`, so a replayed or resumed
//!    transmission never moves it backwards.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use transmissor_proto::names::quote_ident;
use transmissor_proto::pb;

use super::schema::{ColumnSpec, IBGE_COLUMN};
use crate::error::CollectorError;

/// At most this many key columns.
pub const MAX_KEY_COLUMNS: usize = 16;

/// What an upsert transmission declares at `Begin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertSpec {
    pub key: Vec<String>,
    pub watermark: String,
    /// The source's time of the extraction's snapshot.
    pub snapshot_at: DateTime<Utc>,
    /// The watermark the snapshot proves, if any.
    pub proves: Option<DateTime<Utc>>,
}

/// The job's committed state for a municipality, returned by `Begin`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub watermark: Option<DateTime<Utc>>,
    pub reconciled_at: Option<DateTime<Utc>>,
}

/// What a commit's merge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// Rows that replaced a row with the same key.
    pub updated: u64,
    /// Rows deleted because a full transmission lacked their key.
    pub deleted: u64,
}

/// A time that may be absent (a column that may be NULL).
type MaybeTime = Option<DateTime<Utc>>;

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(what: &str, us: i64) -> Result<DateTime<Utc>, CollectorError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| CollectorError::InvalidArgument(format!("{what} {us} is not a valid time")))
}

impl UpsertSpec {
    /// Reads and checks the wire form against the transmission's columns:
    /// the key and the watermark are among them, the watermark is a time.
    pub fn from_pb(u: &pb::Upsert, columns: &[ColumnSpec]) -> Result<Self, CollectorError> {
        let bad = |m: String| Err(CollectorError::InvalidArgument(m));
        if u.key.is_empty() || u.key.len() > MAX_KEY_COLUMNS {
            return bad(format!(
                "an upsert key has 1 to {MAX_KEY_COLUMNS} columns, not {}",
                u.key.len()
            ));
        }
        let find = |name: &str| columns.iter().find(|c| c.name == name);
        for (i, k) in u.key.iter().enumerate() {
            if u.key[..i].contains(k) {
                return bad(format!("key column {k:?} is listed twice"));
            }
            if find(k).is_none() {
                return bad(format!(
                    "key column {k:?} is not among the transmission's columns"
                ));
            }
        }
        match find(&u.watermark) {
            None => {
                return bad(format!(
                    "watermark column {:?} is not among the transmission's columns",
                    u.watermark
                ));
            }
            Some(c) if !c.target_type.starts_with("timestamp") => {
                return bad(format!(
                    "watermark column {:?} is {}; it must be a timestamp",
                    u.watermark, c.target_type
                ));
            }
            Some(_) => {}
        }
        Ok(Self {
            key: u.key.clone(),
            watermark: u.watermark.clone(),
            snapshot_at: from_micros("snapshot_at_us", u.snapshot_at_us)?,
            proves: u
                .proves_watermark_us
                .map(|us| from_micros("proves_watermark_us", us))
                .transpose()?,
        })
    }
}

/// The job's committed watermark and last reconciliation for `ibge`.
pub async fn committed(
    conn: &mut PgConnection,
    ibge: &str,
    job: &str,
) -> Result<Committed, CollectorError> {
    let row: Option<(MaybeTime, MaybeTime)> =
        sqlx::query_as(include_str!("queries/watermark_read.sql"))
            .bind(ibge)
            .bind(job)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(
        row.map_or_else(Committed::default, |(watermark, reconciled_at)| Committed {
            watermark,
            reconciled_at,
        }),
    )
}

/// The transmission's upsert fields, as recorded at `Begin`.
pub struct Recorded {
    pub key: Vec<String>,
    pub snapshot_at: DateTime<Utc>,
    pub proves: Option<DateTime<Utc>>,
}

pub async fn recorded(conn: &mut PgConnection, id: i64) -> Result<Recorded, CollectorError> {
    let (key, snapshot_at, proves): (Option<Vec<String>>, MaybeTime, MaybeTime) =
        sqlx::query_as(
            "SELECT upsert_key, snapshot_at, proves_watermark FROM transmissor.transmissions WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    match (key, snapshot_at) {
        (Some(key), Some(snapshot_at)) => Ok(Recorded {
            key,
            snapshot_at,
            proves,
        }),
        _ => Err(CollectorError::Internal(format!(
            "upsert transmission {id} has no key or snapshot time recorded"
        ))),
    }
}

/// The newest committed snapshot of the job, locked for the transaction.
pub async fn lock_newest(
    conn: &mut PgConnection,
    ibge: &str,
    job: &str,
) -> Result<Option<DateTime<Utc>>, CollectorError> {
    let row: Option<(DateTime<Utc>,)> = sqlx::query_as(include_str!("queries/watermark_lock.sql"))
        .bind(ibge)
        .bind(job)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|(t,)| t))
}

/// Why staged rows cannot be merged by `key`, if they cannot.
pub async fn key_problem(
    conn: &mut PgConnection,
    staging: &str,
    key: &[String],
) -> Result<Option<String>, CollectorError> {
    let cols: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
    let any_null = cols
        .iter()
        .map(|c| format!("{c} IS NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let (nulls, duplicated): (i64, i64) = sqlx::query_as(audited_sql!(
        "SELECT (SELECT count(*) FROM {staging} WHERE {any_null}), \
                (SELECT count(*) FROM (SELECT 1 FROM {staging} GROUP BY {} HAVING count(*) > 1) d)",
        cols.join(", ")
    ))
    .fetch_one(&mut *conn)
    .await?;
    let shown = key.join(", ");
    Ok(if nulls > 0 {
        Some(format!(
            "{nulls} rows have a NULL in the key ({shown}); an upsert key must never be NULL"
        ))
    } else if duplicated > 0 {
        Some(format!(
            "{duplicated} key values ({shown}) appear on more than one row; the plan's key must identify one row"
        ))
    } else {
        None
    })
}

fn key_match(key: &[String], left: &str, right: &str) -> String {
    key.iter()
        .map(|k| {
            let k = quote_ident(k);
            format!("{left}.{k} = {right}.{k}")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Deletes the slice's rows whose key the (full) staging lacks.
pub fn delete_missing(qualified: &str, staging: &str, key: &[String], ibge: &str) -> String {
    format!(
        "DELETE FROM {qualified} AS t WHERE t.{IBGE_COLUMN} = {ibge} \
         AND NOT EXISTS (SELECT 1 FROM {staging} AS s WHERE {})",
        key_match(key, "s", "t")
    )
}

/// Deletes the slice's rows that staged rows replace.
pub fn delete_replaced(qualified: &str, staging: &str, key: &[String], ibge: &str) -> String {
    format!(
        "DELETE FROM {qualified} AS t USING {staging} AS s WHERE t.{IBGE_COLUMN} = {ibge} AND {}",
        key_match(key, "t", "s")
    )
}

/// The unique index of an upsert target: `_ibge` and the key.
pub fn key_index(qualified: &str, key: &[String]) -> String {
    let cols: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
    format!(
        "CREATE UNIQUE INDEX ON {qualified} ({IBGE_COLUMN}, {})",
        cols.join(", ")
    )
}

/// Merges the staged rows into the slice (the caller has checked the key,
/// locked the slice, and inserts the staged rows after this).
pub async fn merge(
    conn: &mut PgConnection,
    qualified: &str,
    staging: &str,
    key: &[String],
    ibge_literal: &str,
    full: bool,
) -> Result<Merged, CollectorError> {
    let deleted = if full {
        sqlx::query(sqlx::AssertSqlSafe(delete_missing(
            qualified,
            staging,
            key,
            ibge_literal,
        )))
        .execute(&mut *conn)
        .await?
        .rows_affected()
    } else {
        0
    };
    let updated = sqlx::query(sqlx::AssertSqlSafe(delete_replaced(
        qualified,
        staging,
        key,
        ibge_literal,
    )))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(Merged { updated, deleted })
}

/// Moves the job's committed state forward (never backwards).
#[allow(clippy::too_many_arguments)]
pub async fn advance(
    conn: &mut PgConnection,
    ibge: &str,
    job: &str,
    target: &str,
    recorded: &Recorded,
    full: bool,
    transmission: i64,
) -> Result<(), CollectorError> {
    sqlx::query(include_str!("queries/watermark_advance.sql"))
        .bind(ibge)
        .bind(job)
        .bind(target)
        .bind(recorded.proves)
        .bind(recorded.snapshot_at)
        .bind(full)
        .bind(transmission)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<ColumnSpec> {
        vec![
            ColumnSpec::builtin("id", "bigint"),
            ColumnSpec::builtin("Part", "integer"),
            ColumnSpec::builtin("changed", "timestamp with time zone"),
            ColumnSpec::builtin("day", "date"),
        ]
    }

    fn wire(key: &[&str], watermark: &str) -> pb::Upsert {
        pb::Upsert {
            key: key.iter().map(|k| k.to_string()).collect(),
            watermark: watermark.into(),
            snapshot_at_us: 1_764_000_000_000_000,
            proves_watermark_us: Some(1_763_999_000_000_000),
        }
    }

    #[test]
    fn the_key_and_watermark_are_checked_against_the_columns() {
        let u = UpsertSpec::from_pb(&wire(&["id", "Part"], "changed"), &cols()).unwrap();
        assert_eq!(u.key, ["id", "Part"]);
        assert_eq!(micros(u.snapshot_at), 1_764_000_000_000_000);
        let err = |w: pb::Upsert| UpsertSpec::from_pb(&w, &cols()).unwrap_err().to_string();
        assert!(err(wire(&[], "changed")).contains("1 to 16 columns"));
        assert!(err(wire(&["id", "id"], "changed")).contains("listed twice"));
        assert!(err(wire(&["nope"], "changed")).contains("\"nope\" is not among"));
        assert!(err(wire(&["id"], "gone")).contains("watermark column \"gone\""));
        assert!(err(wire(&["id"], "day")).contains("is date; it must be a timestamp"));
    }

    #[test]
    fn merge_statements_quote_and_match_every_key_column() {
        let key = vec!["id".to_string(), "Part".to_string()];
        let sql = delete_replaced("analytic.t", "transmissor_staging.t_1", &key, "'3550308'");
        assert!(
            sql.ends_with(
                "t._ibge = '3550308' AND t.\"id\" = s.\"id\" AND t.\"Part\" = s.\"Part\""
            ),
            "{sql}"
        );
        let sql = delete_missing("analytic.t", "transmissor_staging.t_1", &key, "'3550308'");
        assert!(sql.contains("NOT EXISTS"), "{sql}");
        assert!(sql.contains("s.\"Part\" = t.\"Part\""), "{sql}");
        assert_eq!(
            key_index("analytic.t", &key),
            "CREATE UNIQUE INDEX ON analytic.t (_ibge, \"id\", \"Part\")"
        );
    }
}
