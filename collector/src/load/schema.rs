//! Columns of a job, modes and COPY formats, as the collector accepts them.
//!
//! Column types must be built-in PostgreSQL types (schema `pg_catalog`): the
//! agent maps enums to `text` and domains to their base type; anything else
//! is refused with an error that names the column and its type. What a
//! target's columns become is [`super::layout`] and [`super::evolve`].

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

impl ColumnSpec {
    /// A column whose source and target types are the same built-in type.
    pub fn builtin(name: &str, ty: &str) -> Self {
        Self {
            name: name.into(),
            source_type: ty.into(),
            target_type: ty.into(),
        }
    }
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
        ColumnSpec::builtin(n, t)
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
