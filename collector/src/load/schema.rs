//! Columns of a job, modes and COPY formats, as the collector accepts them.
//!
//! Column types must be among the data types of [`ALLOWED_TYPES`] (the
//! agent maps enums to `text` and domains to their base type); anything else
//! is refused with an error that names the column and its type, decided
//! without a query, however many columns a `Begin` lists. What a
//! target's columns become is [`super::layout`] and [`super::evolve`].

use serde::{Deserialize, Serialize};

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
    /// The agent sends pseudonyms, not values (`target_type` is `text`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pseudonymised: bool,
}

impl ColumnSpec {
    /// A column whose source and target types are the same built-in type.
    pub fn builtin(name: &str, ty: &str) -> Self {
        Self {
            name: name.into(),
            source_type: ty.into(),
            target_type: ty.into(),
            pseudonymised: false,
        }
    }
}

impl From<&pb::Column> for ColumnSpec {
    fn from(c: &pb::Column) -> Self {
        Self {
            name: c.name.clone(),
            source_type: c.source_type.clone(),
            target_type: c.target_type.clone(),
            pseudonymised: c.pseudonymised,
        }
    }
}

/// Data types a target column may have, as PostgreSQL's `format_type`
/// spells them (typmods and array brackets removed), plus their internal
/// names. Only types that hold data: no `reg*` (`regclass`, `regrole`, …),
/// `aclitem`, `oid`, `pg_lsn`, `xid` or `txid_snapshot`, whose input
/// functions look up the analytic database's catalog or whose values mean
/// nothing there, so an agent cannot probe that catalog through the errors
/// its values cause.
const ALLOWED_TYPES: &[&str] = &[
    "boolean",
    "bool",
    "smallint",
    "int2",
    "integer",
    "int",
    "int4",
    "bigint",
    "int8",
    "numeric",
    "decimal",
    "real",
    "float4",
    "double precision",
    "float8",
    "money",
    "text",
    "character varying",
    "varchar",
    "character",
    "char",
    "bpchar",
    "\"char\"",
    "name",
    "bytea",
    "date",
    "time without time zone",
    "time",
    "time with time zone",
    "timetz",
    "timestamp without time zone",
    "timestamp",
    "timestamp with time zone",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "xml",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "bit",
    "bit varying",
    "varbit",
    "point",
    "line",
    "lseg",
    "box",
    "path",
    "polygon",
    "circle",
    "tsvector",
    "tsquery",
    "int4range",
    "int8range",
    "numrange",
    "daterange",
    "tsrange",
    "tstzrange",
];

/// Interval field qualifiers (`interval year to month`).
const INTERVAL_FIELDS: &[&str] = &[
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "year to month",
    "day to hour",
    "day to minute",
    "day to second",
    "hour to minute",
    "hour to second",
    "minute to second",
];

/// Whether `ty` (a `format_type` spelling) is one of [`ALLOWED_TYPES`],
/// with or without typmods and array brackets. Decided without the
/// database: a name that passes resolves to that built-in type.
pub fn is_allowed_type(ty: &str) -> bool {
    // Remove "(…)" typmods: "numeric(10,2)", "timestamp(3) with time zone".
    let mut base = String::with_capacity(ty.len());
    let mut depth = 0u32;
    for ch in ty.chars() {
        match ch {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            ')' => return false,
            _ if depth == 0 => base.push(ch),
            c if c.is_ascii_digit() || c == ',' || c == ' ' => {}
            _ => return false,
        }
    }
    if depth != 0 {
        return false;
    }
    let mut base = base.trim();
    while let Some(inner) = base.strip_suffix("[]") {
        base = inner.trim_end();
    }
    let words: Vec<&str> = base.split_whitespace().collect();
    let base = words.join(" ");
    if ALLOWED_TYPES.contains(&base.as_str()) {
        return true;
    }
    base.strip_prefix("interval ")
        .is_some_and(|fields| INTERVAL_FIELDS.contains(&fields))
}

/// Checks the column list: its length first (at most `max_columns`, so a
/// huge list costs nothing), then names and types, without the database.
pub fn check_columns(cols: &[ColumnSpec], max_columns: usize) -> Result<(), CollectorError> {
    if cols.is_empty() {
        return Err(CollectorError::InvalidArgument(
            "a job must return at least one column".into(),
        ));
    }
    if cols.len() > max_columns {
        return Err(CollectorError::InvalidArgument(format!(
            "the job sends {} columns; a target holds at most {max_columns} (load.max_target_columns)",
            cols.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for c in cols {
        if c.name.is_empty() || c.name.len() > 63 || c.name.contains('\0') {
            return Err(CollectorError::InvalidArgument(format!(
                "column name {:?} is empty, longer than 63 bytes or contains NUL",
                c.name.chars().take(80).collect::<String>()
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
        crate::admission::check_len("a column's source type", &c.source_type, 200)?;
        if c.pseudonymised && c.target_type != "text" {
            return Err(CollectorError::InvalidArgument(format!(
                "column {:?} is declared pseudonymised with type {:?}; pseudonyms are text",
                c.name,
                c.target_type.chars().take(100).collect::<String>()
            )));
        }
        if c.target_type.len() > 100 || !is_allowed_type(&c.target_type) {
            return Err(CollectorError::InvalidArgument(format!(
                "column {:?} has type {:?} (source type {:?}), which is not among the data types the analytic database accepts",
                c.name,
                c.target_type.chars().take(100).collect::<String>(),
                c.source_type
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
        Ok(pb::Mode::Upsert) => Ok("upsert"),
        _ => Err(CollectorError::InvalidArgument(format!(
            "mode {mode} is not supported (snapshot, append or upsert)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(n: &str, t: &str) -> ColumnSpec {
        ColumnSpec::builtin(n, t)
    }

    fn check(cols: &[ColumnSpec]) -> Result<(), CollectorError> {
        check_columns(cols, 400)
    }

    #[test]
    fn injection_in_types_refused() {
        assert!(check(&[col("a", "integer); drop table x; --")]).is_err());
        assert!(check(&[col("a", "numeric(10,2)")]).is_ok());
        assert!(check(&[col("a", "timestamp(3) with time zone")]).is_ok());
        assert!(check(&[col("_ibge", "text")]).is_err());
        assert!(check(&[col("a", "text"), col("a", "text")]).is_err());
        let mut p = col("a", "text");
        p.pseudonymised = true;
        assert!(check(std::slice::from_ref(&p)).is_ok());
        p.target_type = "bytea".into();
        assert!(check(&[p]).is_err());
    }

    #[test]
    fn only_data_types_are_allowed() {
        for ok in [
            "integer",
            "character varying(255)",
            "character varying(10)[]",
            "numeric(10,2)",
            "timestamp(3) without time zone",
            "interval year to month",
            "interval(3)",
            "\"char\"",
            "bit varying(5)",
            "jsonb",
            "text[][]",
            "tstzrange",
        ] {
            assert!(is_allowed_type(ok), "{ok} refused");
        }
        for bad in [
            "regclass",
            "regrole",
            "regprocedure",
            "aclitem",
            "oid",
            "pg_lsn",
            "xid",
            "txid_snapshot",
            "regclass[]",
            "public.text",
            "integer(",
            "numeric(1)2)",
            "interval forever",
            "pg_catalog.regtype",
            "text(abc)",
        ] {
            assert!(!is_allowed_type(bad), "{bad} accepted");
        }
    }

    #[test]
    fn the_column_count_is_checked_before_anything_else() {
        let many: Vec<ColumnSpec> = (0..401)
            .map(|i| col(&format!("c{i}"), "regclass"))
            .collect();
        let e = check(&many).unwrap_err().to_string();
        assert!(
            e.contains("sends 401 columns; a target holds at most 400"),
            "{e}"
        );
    }
}
