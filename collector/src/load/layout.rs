//! Target tables as analysts see them, and the DDL that makes them.
//!
//! Every target has `_ibge` (set by the collector from the caller's
//! certificate), `_transmission_id`, then the union of the columns its
//! municipalities send (see [`super::evolve`]).
//!
//! - **snapshot** targets are hash-partitioned by `_ibge` into a small fixed
//!   number of partitions (`[load] target_partitions`, 16 by default) in
//!   schema `transmissor_parts`, each indexed on `_ibge`. A commit replaces
//!   one municipality's rows with `DELETE` + `INSERT` (row locks only), so
//!   a query over all municipalities locks a few dozen relations whatever
//!   the fleet's size, and the unit of vacuum is 1/16 of the table.
//! - **append** targets are one plain table indexed on
//!   `(_ibge, _transmission_id)`.
//!
//! Both layouts carry their own autovacuum settings: a snapshot target turns
//! over completely every day, so its partitions are vacuumed at 10% dead
//! rows rather than PostgreSQL's default 20% (at most ~10% bloat, about ten
//! vacuums of each partition a day; see ARCHITECTURE.md).

use transmissor_proto::names::{quote_ident, quote_literal};

use super::PARTS_SCHEMA;
use super::schema::{ColumnSpec, IBGE_COLUMN, TRANSMISSION_COLUMN};

/// Storage parameters of every target table (or partition).
pub const AUTOVACUUM: &str =
    "autovacuum_vacuum_scale_factor = 0.1, autovacuum_analyze_scale_factor = 0.05";

/// Name (in `transmissor_parts`) of partition `i` of `target`: at most 63
/// bytes, like every PostgreSQL identifier.
pub fn partition_name(target: &str, i: u16) -> String {
    let base: String = target.chars().take(58).collect();
    format!("{base}_p{i:03}")
}

fn column_defs(cols: &[ColumnSpec]) -> Vec<String> {
    cols.iter()
        .map(|c| format!("{} {}", quote_ident(&c.name), c.target_type))
        .collect()
}

/// The statements that create a new target (`partitions` = 0: a plain table).
pub fn create_target(
    qualified: &str,
    target: &str,
    cols: &[ColumnSpec],
    partitions: u16,
) -> Vec<String> {
    let mut defs = vec![
        format!("{IBGE_COLUMN} char(7) NOT NULL"),
        format!("{TRANSMISSION_COLUMN} bigint NOT NULL"),
    ];
    defs.extend(column_defs(cols));
    let body = defs.join(", ");
    if partitions == 0 {
        return vec![
            format!("CREATE TABLE {qualified} ({body}) WITH ({AUTOVACUUM})"),
            format!("CREATE INDEX ON {qualified} ({IBGE_COLUMN}, {TRANSMISSION_COLUMN})"),
        ];
    }
    let mut out = vec![format!(
        "CREATE TABLE {qualified} ({body}) PARTITION BY HASH ({IBGE_COLUMN})"
    )];
    for i in 0..partitions {
        out.push(format!(
            "CREATE TABLE {PARTS_SCHEMA}.{} PARTITION OF {qualified} \
             FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i}) WITH ({AUTOVACUUM})",
            quote_ident(&partition_name(target, i))
        ));
    }
    out.push(format!("CREATE INDEX ON {qualified} ({IBGE_COLUMN})"));
    out
}

/// Adds columns (nullable, no default: a catalog change only, no rewrite).
pub fn add_columns(qualified: &str, cols: &[ColumnSpec]) -> String {
    let adds: Vec<String> = column_defs(cols)
        .into_iter()
        .map(|d| format!("ADD COLUMN IF NOT EXISTS {d}"))
        .collect();
    format!("ALTER TABLE {qualified} {}", adds.join(", "))
}

/// What a pseudonymised column's comment says.
pub const PSEUDONYM_COMMENT: &str = "pseudonym: lowercase hex HMAC-SHA256 of the value's text, keyed by a secret held only by each municipality's agent; not reversible centrally, and the same person has different pseudonyms in different municipalities";

/// `COMMENT ON COLUMN` for each pseudonymised column of `cols`.
pub fn pseudonym_comments(qualified: &str, cols: &[ColumnSpec]) -> Vec<String> {
    cols.iter()
        .filter(|c| c.pseudonymised)
        .map(|c| {
            format!(
                "COMMENT ON COLUMN {qualified}.{} IS {}",
                quote_ident(&c.name),
                quote_literal(PSEUDONYM_COMMENT)
            )
        })
        .collect()
}

/// A transmission's staging table: exactly the columns it sends.
pub fn create_staging(staging: &str, cols: &[ColumnSpec]) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {staging} ({})",
        column_defs(cols).join(", ")
    )
}

/// Moves a staged transmission into its target, naming the columns it sent:
/// target columns it did not send read NULL.
pub fn insert_from_staging(
    qualified: &str,
    staging: &str,
    cols: &[ColumnSpec],
    ibge_literal: &str,
    transmission_id: i64,
) -> String {
    let names: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
    let names = names.join(", ");
    format!(
        "INSERT INTO {qualified} ({IBGE_COLUMN}, {TRANSMISSION_COLUMN}, {names}) \
         SELECT {ibge_literal}, {transmission_id}, {names} FROM {staging}"
    )
}

/// Removes a municipality's rows (`ibge_literal` is a quoted literal, so the
/// planner prunes to one partition).
pub fn delete_slice(qualified: &str, ibge_literal: &str) -> String {
    format!("DELETE FROM {qualified} WHERE {IBGE_COLUMN} = {ibge_literal}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_fit_an_identifier() {
        assert_eq!(partition_name("visitas", 7), "visitas_p007");
        let long = "x".repeat(63);
        assert_eq!(partition_name(&long, 255).len(), 63);
    }

    #[test]
    fn snapshot_targets_are_hash_partitioned() {
        let cols = [ColumnSpec::builtin("Co", "integer")];
        let sql = create_target("analytic.t", "t", &cols, 4);
        assert_eq!(sql.len(), 6);
        assert!(sql[0].ends_with("PARTITION BY HASH (_ibge)"), "{}", sql[0]);
        assert!(sql[0].contains("\"Co\" integer"), "{}", sql[0]);
        assert!(sql[4].contains("MODULUS 4, REMAINDER 3"), "{}", sql[4]);
        let plain = create_target("analytic.t", "t", &cols, 0);
        assert!(!plain[0].contains("PARTITION"), "{}", plain[0]);
    }
}
