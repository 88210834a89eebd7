//! Which column names hold personal data: the project's reference list
//! (`personal_data.toml`, embedded) plus the patterns a plan adds with its
//! top-level `personal_data` field. A job returning such a column, or a
//! column computed from one under any name ([`crate::lineage`]), must give
//! it a policy in `[jobs.columns]`; the signer ([`crate::check_personal_data`])
//! and the agent (on the SQL's lineage, and on the columns the database
//! describes) refuse it otherwise.

use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;

/// Category given to the patterns a plan adds.
pub const PLAN_CATEGORY: &str = "listed by the plan";

/// Longest pattern (a column name is at most 63 bytes).
pub const MAX_PATTERN_BYTES: usize = 63;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    category: Vec<RawCategory>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    name: String,
    patterns: Vec<String>,
}

/// One pattern and the category it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pattern: String,
    category: String,
}

/// A set of column-name patterns by category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalData {
    entries: Vec<Entry>,
}

/// A personal-data column and its category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified<'a> {
    pub category: &'a str,
    pub pattern: &'a str,
}

impl fmt::Display for Classified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pattern {:?})", self.category, self.pattern)
    }
}

impl PersonalData {
    /// The project's reference list (`plan/src/personal_data.toml`).
    pub fn reference() -> &'static PersonalData {
        static LIST: OnceLock<PersonalData> = OnceLock::new();
        LIST.get_or_init(|| {
            let raw: RawList = toml::from_str(include_str!("personal_data.toml"))
                .expect("personal_data.toml is checked by a unit test");
            let entries = raw
                .category
                .into_iter()
                .flat_map(|c| {
                    c.patterns.into_iter().map(move |pattern| Entry {
                        pattern,
                        category: c.name.clone(),
                    })
                })
                .collect();
            PersonalData { entries }
        })
    }

    /// The reference list followed by a plan's own patterns.
    pub fn with_plan_patterns(patterns: &[String]) -> PersonalData {
        let mut list = Self::reference().clone();
        list.entries.extend(patterns.iter().map(|p| Entry {
            pattern: p.clone(),
            category: PLAN_CATEGORY.to_string(),
        }));
        list
    }

    /// The category of `column`, if it holds personal data (case ignored).
    pub fn classify(&self, column: &str) -> Option<Classified<'_>> {
        let lower = column.to_lowercase();
        self.entries
            .iter()
            .find(|e| glob(&e.pattern, &lower))
            .map(|e| Classified {
                category: &e.category,
                pattern: &e.pattern,
            })
    }

    /// Every category, in order (for documentation and tests).
    pub fn categories(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for e in &self.entries {
            if !out.contains(&e.category.as_str()) {
                out.push(&e.category);
            }
        }
        out
    }
}

/// Checks one pattern of a plan's `personal_data`: 1 to 63 bytes of
/// `a-z`, `0-9`, `_` and `*`, with at least one character besides `*`
/// (a bare `*` would make every column personal data: list the policies
/// instead).
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "pattern {:?} must be 1 to {MAX_PATTERN_BYTES} bytes",
            pattern.chars().take(80).collect::<String>()
        ));
    }
    if !pattern
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'*')
    {
        return Err(format!(
            "pattern {pattern:?} may hold only a-z, 0-9, _ and * (column names are matched ignoring case)"
        ));
    }
    if pattern.bytes().all(|b| b == b'*') {
        return Err(format!(
            "pattern {pattern:?} matches every column; name the columns or their prefixes"
        ));
    }
    Ok(())
}

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters (iterative, with backtracking to the last `*`: linear in
/// practice, never exponential).
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_list_parses_and_its_patterns_are_valid() {
        let list = PersonalData::reference();
        assert!(list.entries.len() > 30);
        for e in &list.entries {
            check_pattern(&e.pattern).unwrap_or_else(|m| panic!("{m}"));
        }
        assert_eq!(
            list.categories(),
            [
                "CPF",
                "CNS",
                "mother's name",
                "name",
                "birth date",
                "phone",
                "e-mail",
                "address",
                "coordinates"
            ]
        );
    }

    #[test]
    fn every_pii_column_of_the_reference_schema_is_classified() {
        let list = PersonalData::reference();
        for (column, category) in [
            ("nu_cns", "CNS"),
            ("nu_cpf_cidadao", "CPF"),
            ("no_cidadao", "name"),
            ("no_social_cidadao", "name"),
            ("no_profissional", "name"),
            ("no_nome", "name"),
            ("no_nome_mae", "mother's name"),
            ("no_mae", "mother's name"),
            ("no_pai", "name"),
            ("co_dim_tempo_nascimento", "birth date"),
            ("dt_nascimento", "birth date"),
            ("nu_telefone_celular", "phone"),
            ("nu_telefone_residencia", "phone"),
            ("nu_celular", "phone"),
            ("ds_email", "e-mail"),
            ("nu_cep", "address"),
            ("no_logradouro", "address"),
            ("nu_num_logradouro", "address"),
            ("no_complemento", "address"),
            ("no_bairro", "address"),
            ("nu_latitude", "coordinates"),
            ("NU_LONGITUDE", "coordinates"),
        ] {
            assert_eq!(
                list.classify(column).map(|c| c.category),
                Some(category),
                "{column}"
            );
        }
        for clear in [
            "co_seq_fat_cidadao_pec",
            "nu_micro_area",
            "no_equipe",
            "no_unidade_saude",
            "no_municipio",
            "st_nao_possui_cpf",
            "co_dim_just_nao_possui_cpf",
            "nu_peso",
            "ds_filtro_cids",
            "dt_inicial_atendimento",
        ] {
            assert_eq!(list.classify(clear), None, "{clear}");
        }
    }

    #[test]
    fn a_plan_adds_patterns() {
        let list = PersonalData::with_plan_patterns(&["nu_pis".into(), "ds_obs*".into()]);
        assert_eq!(
            list.classify("nu_pis").map(|c| c.category),
            Some(PLAN_CATEGORY)
        );
        assert_eq!(
            list.classify("ds_observacao").map(|c| c.category),
            Some(PLAN_CATEGORY)
        );
        assert_eq!(list.classify("nu_pis_x"), None);
        // The reference list still applies, first.
        assert_eq!(list.classify("nu_cns").map(|c| c.category), Some("CNS"));
    }

    #[test]
    fn patterns_are_checked() {
        for ok in ["nu_pis", "ds_*", "*_cpf_*", "a"] {
            assert!(check_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", "*", "**", "NU_PIS", "nu-pis", "nu pis", &"a".repeat(64)] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob("nu_cpf*", "nu_cpf"));
        assert!(glob("nu_cpf*", "nu_cpf_cidadao"));
        assert!(!glob("nu_cpf*", "x_nu_cpf"));
        assert!(glob("*_cpf_*", "st_cpf_x"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("cep", "cep"));
        assert!(!glob("cep", "cepx"));
        assert!(glob("*", ""));
    }
}
