//! Columns of a job, the target table they define, and schema changes.
//!
//! A target's columns are `_ibge` (set by the collector from the caller's
//! certificate), `_transmission_id`, then the job's columns in order. Column
//! types must be built-in PostgreSQL types (schema `pg_catalog`): the agent
//! maps enums to `text` and domains to their base type; anything else is
//! refused with an error that names the column and its type.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use transmissor_proto::names::quote_ident;
use transmissor_proto::pb;

use crate::error::CollectorError;

/// Columns every target has, set by the collector.
pub const IBGE_COLUMN: &str = "_ibge";
pub const TRANSMISSION_COLUMN: &str = "_transmission_id";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    pub source_type: String,
    pub target_type: String,
}

impl From<&pb::Column> for ColumnSpec {
    fn from(c: &pb::Column) -> Self {
        Self {
            name: c.name.clone(),
            source_type: c.source_type.clone(),
            target_type: c.target_type.clone(),
        }
    }
}

/// Checks names and the shape of type names (no database needed).
pub fn check_columns(cols: &[ColumnSpec]) -> Result<(), CollectorError> {
    if cols.is_empty() {
        return Err(CollectorError::InvalidArgument(
            "a job must return at least one column".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for c in cols {
        if c.name.is_empty() || c.name.len() > 63 || c.name.contains('\0') {
            return Err(CollectorError::InvalidArgument(format!(
                "column name {:?} is empty, longer than 63 bytes or contains NUL",
                c.name
            )));
        }
        if c.name == IBGE_COLUMN || c.name == TRANSMISSION_COLUMN {
            return Err(CollectorError::InvalidArgument(format!(
                "column {:?} is reserved for the collector; rename it in the job's query",
                c.name
            )));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(CollectorError::InvalidArgument(format!(
                "column {:?} appears twice in the job's result; give it an alias",
                c.name
            )));
        }
        let ok_chars = c.target_type.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b' ' | b'_' | b'(' | b')' | b',' | b'[' | b']' | b'"')
        });
        if c.target_type.is_empty() || c.target_type.len() > 100 || !ok_chars {
            return Err(CollectorError::InvalidArgument(format!(
                "column {:?} has type {:?}, which is not a built-in type name",
                c.name, c.target_type
            )));
        }
    }
    Ok(())
}

/// Checks that every target type resolves to a built-in (pg_catalog) type.
pub async fn check_types(pool: &PgPool, cols: &[ColumnSpec]) -> Result<(), CollectorError> {
    for c in cols {
        let row: Result<Option<(bool, String)>, sqlx::Error> = sqlx::query_as(
            "SELECT t.typnamespace = 'pg_catalog'::regnamespace, t.typtype::text \
             FROM pg_type t WHERE t.oid = to_regtype($1)",
        )
        .bind(&c.target_type)
        .fetch_optional(pool)
        .await;
        let builtin = match row {
            Ok(Some((in_catalog, typtype))) => {
                in_catalog && matches!(typtype.as_str(), "b" | "r" | "m")
            }
            Ok(None) => false,
            Err(sqlx::Error::Database(_)) => false,
            Err(e) => return Err(CollectorError::DatabaseUnavailable(e.to_string())),
        };
        if !builtin {
            return Err(CollectorError::InvalidArgument(format!(
                "column {:?} has type {:?} (source type {:?}), which is not a built-in PostgreSQL type the analytic database can hold",
                c.name, c.target_type, c.source_type
            )));
        }
    }
    Ok(())
}

/// Describes how `new` differs from the target's `old` columns, naming them.
pub fn diff(target: &str, old: &[ColumnSpec], new: &[ColumnSpec]) -> Option<String> {
    let mut parts = Vec::new();
    let added: Vec<_> = new
        .iter()
        .filter(|n| !old.iter().any(|o| o.name == n.name))
        .map(|n| format!("{} {}", n.name, n.target_type))
        .collect();
    let removed: Vec<_> = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.name == o.name))
        .map(|o| format!("{} {}", o.name, o.target_type))
        .collect();
    let changed: Vec<_> = new
        .iter()
        .filter_map(|n| {
            old.iter()
                .find(|o| o.name == n.name && o.target_type != n.target_type)
                .map(|o| format!("{} {} -> {}", n.name, o.target_type, n.target_type))
        })
        .collect();
    if !added.is_empty() {
        parts.push(format!("added columns: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("removed columns: {}", removed.join(", ")));
    }
    if !changed.is_empty() {
        parts.push(format!("changed types: {}", changed.join(", ")));
    }
    let same_set = added.is_empty() && removed.is_empty() && changed.is_empty();
    if same_set && old.iter().map(|c| &c.name).ne(new.iter().map(|c| &c.name)) {
        parts.push(format!(
            "column order changed: was ({}), now ({})",
            old.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            new.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!(
            "schema of target {target} changed: {}; the transmission was refused (update the target or the job's query)",
            parts.join("; ")
        ))
    }
}

/// `CREATE TABLE` for a new target.
pub fn create_target_sql(qualified: &str, mode: &str, cols: &[ColumnSpec]) -> Vec<String> {
    let mut defs = vec![
        format!("{IBGE_COLUMN} char(7) NOT NULL"),
        format!("{TRANSMISSION_COLUMN} bigint NOT NULL"),
    ];
    defs.extend(
        cols.iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), c.target_type)),
    );
    let body = defs.join(", ");
    if mode == "snapshot" {
        vec![format!(
            "CREATE TABLE {qualified} ({body}) PARTITION BY LIST ({IBGE_COLUMN})"
        )]
    } else {
        vec![
            format!("CREATE TABLE {qualified} ({body})"),
            format!("CREATE INDEX ON {qualified} ({IBGE_COLUMN}, {TRANSMISSION_COLUMN})"),
        ]
    }
}

/// The `COPY ... FROM STDIN` statement for a transmission's staging table.
pub fn copy_in_sql(staging: &str, cols: &[ColumnSpec], binary: bool) -> String {
    let list: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
    let format = if binary { " (FORMAT binary)" } else { "" };
    format!("COPY {staging} ({}) FROM STDIN{format}", list.join(", "))
}

pub fn copy_format_str(format: i32) -> Result<&'static str, CollectorError> {
    match pb::CopyFormat::try_from(format) {
        Ok(pb::CopyFormat::Text) => Ok("text"),
        Ok(pb::CopyFormat::Binary) => Ok("binary"),
        Err(_) => Err(CollectorError::InvalidArgument(format!(
            "COPY format {format} is not supported (text or binary)"
        ))),
    }
}

pub fn mode_str(mode: i32) -> Result<&'static str, CollectorError> {
    match pb::Mode::try_from(mode) {
        Ok(pb::Mode::Snapshot) => Ok("snapshot"),
        Ok(pb::Mode::Append) => Ok("append"),
        _ => Err(CollectorError::InvalidArgument(format!(
            "mode {mode} is not supported (snapshot or append)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(n: &str, t: &str) -> ColumnSpec {
        ColumnSpec {
            name: n.into(),
            source_type: t.into(),
            target_type: t.into(),
        }
    }

    #[test]
    fn diff_names_columns() {
        let old = vec![col("a", "integer"), col("b", "text")];
        assert_eq!(diff("t", &old, &old), None);
        let new = vec![col("a", "bigint"), col("c", "date")];
        let d = diff("t", &old, &new).unwrap();
        assert!(d.contains("added columns: c date"), "{d}");
        assert!(d.contains("removed columns: b text"), "{d}");
        assert!(d.contains("changed types: a integer -> bigint"), "{d}");
        let swapped = vec![col("b", "text"), col("a", "integer")];
        assert!(diff("t", &old, &swapped).unwrap().contains("order"));
    }

    #[test]
    fn injection_in_types_refused() {
        assert!(check_columns(&[col("a", "integer); drop table x; --")]).is_err());
        assert!(check_columns(&[col("a", "numeric(10,2)")]).is_ok());
        assert!(check_columns(&[col("a", "timestamp(3) with time zone")]).is_ok());
        assert!(check_columns(&[col("_ibge", "text")]).is_err());
        assert!(check_columns(&[col("a", "text"), col("a", "text")]).is_err());
    }
}
