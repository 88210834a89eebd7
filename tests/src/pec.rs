//! Synthetic PEC-like source databases for the demo, tests and benchmarks.
//!
//! The e-SUS APS PEC keeps a reporting data warehouse in its own PostgreSQL database; agents
//! extract from it. This module ships a stand-in with the same shape and no real person in it:
//!
//! * [`SCHEMA_SQL`] creates the 13 PEC-like tables (PostgreSQL 9.6 to 17).
//! * [`data_sql`] renders the generator script, which truncates and fills them. The data are
//!   deterministic: the same municipality, seed and [`Scale`] always give identical rows. The
//!   script is plain multi-statement SQL (send it with a simple-query batch, e.g.
//!   `batch_execute`, on a connection with `standard_conforming_strings = on`, the default).
//! * [`HYPERTENSION_LIST_SQL`] is one `SELECT` (no trailing semicolon, so it can be wrapped in
//!   `COPY (...) TO STDOUT` or a subquery): the nominal list of hypertensive citizens.

/// DDL of the 13 PEC-like tables.
pub const SCHEMA_SQL: &str = include_str!("../sql/pec_schema.sql");

/// One `SELECT`: one row per hypertensive citizen, with identification and care indicators.
pub const HYPERTENSION_LIST_SQL: &str = include_str!("../sql/hypertension_list.sql");

/// Generator template; its `{{NAME}}` placeholders are filled by [`data_sql`].
const DATA_SQL_TEMPLATE: &str = include_str!("../sql/pec_data.sql");

/// Row counts of the main tables. Dimensions, registrations and households follow from
/// `citizens` (about 1.4 registration rows and 0.32 households per citizen).
#[derive(Debug, Clone)]
pub struct Scale {
    /// Rows of `tb_fat_cidadao_pec` (0 is treated as 1).
    pub citizens: u64,
    /// Rows of `tb_fat_visita_domiciliar`.
    pub visits: u64,
    /// Rows of `tb_fat_atendimento_individual`.
    pub care: u64,
}

impl Scale {
    /// A small municipality for the demo: loads in about a second.
    pub fn demo() -> Self {
        Self {
            citizens: 2_000,
            visits: 20_000,
            care: 15_000,
        }
    }

    /// The smallest useful database, for fast tests.
    pub fn tiny() -> Self {
        Self {
            citizens: 200,
            visits: 1_000,
            care: 800,
        }
    }
}

/// Renders the generator script for municipality `ibge` (7 ASCII digits) named `name`.
///
/// `name` is free text; it is escaped here for a SQL string literal. Panics if `ibge` is not
/// exactly 7 ASCII digits.
pub fn data_sql(ibge: &str, name: &str, seed: u64, scale: &Scale) -> String {
    assert!(
        ibge.len() == 7 && ibge.bytes().all(|b| b.is_ascii_digit()),
        "IBGE municipality code must be 7 ASCII digits, got {ibge:?}"
    );
    DATA_SQL_TEMPLATE
        .replace("{{IBGE}}", ibge)
        .replace("{{SEED}}", &seed.to_string())
        .replace("{{CITIZENS}}", &scale.citizens.to_string())
        .replace("{{VISITS}}", &scale.visits.to_string())
        .replace("{{CARE}}", &scale.care.to_string())
        // Last, so that placeholder-like text inside the name is left alone.
        .replace("{{MUNICIPIO}}", &name.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_every_placeholder() {
        let sql = data_sql("3550308", "São Paulo", 7, &Scale::tiny());
        assert!(!sql.contains("{{"), "placeholder left in generator");
        assert!(sql.contains("'3550308'::text AS ibge"));
        assert!(sql.contains("'São Paulo'::text AS municipio"));
        assert!(sql.contains("'/7/3550308'::text AS salt"));
        assert!(sql.contains("greatest(1, 200)::bigint AS citizens"));
        assert!(sql.contains("(1000)::bigint AS visits"));
        assert!(sql.contains("(800)::bigint AS care"));
    }

    #[test]
    fn escapes_the_name_and_leaves_placeholder_like_text_alone() {
        let sql = data_sql(
            "3545209",
            "Bárbara d'Oeste {{SEED}}",
            u64::MAX,
            &Scale::demo(),
        );
        assert!(sql.contains("'Bárbara d''Oeste {{SEED}}'::text AS municipio"));
        assert!(sql.contains(&format!("'/{}/3545209'::text", u64::MAX)));
    }

    #[test]
    fn seed_and_municipality_change_the_script() {
        let s = Scale::tiny();
        let a = data_sql("1100015", "A", 1, &s);
        assert_eq!(a, data_sql("1100015", "A", 1, &s));
        assert_ne!(a, data_sql("1100015", "A", 2, &s));
        assert_ne!(a, data_sql("1100023", "A", 1, &s));
    }

    #[test]
    #[should_panic(expected = "7 ASCII digits")]
    fn rejects_short_ibge() {
        data_sql("355030", "X", 1, &Scale::tiny());
    }

    #[test]
    #[should_panic(expected = "7 ASCII digits")]
    fn rejects_non_digits() {
        data_sql("35503a8", "X", 1, &Scale::tiny());
    }

    #[test]
    fn list_is_a_single_select() {
        let q = HYPERTENSION_LIST_SQL.trim_end();
        assert!(!q.ends_with(';') && !q.contains("{{"));
        assert!(SCHEMA_SQL.contains("CREATE TABLE tb_fat_visita_domiciliar"));
    }
}
