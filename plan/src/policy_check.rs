//! The signer's personal-data check, on a job's SQL: every column a job
//! returns that is personal data needs a policy in `[jobs.columns]`, and
//! every policy must name a column the job returns (a typo would let the
//! column leave under its real name). A column is personal data when its
//! name is on the list ([`PersonalData`]) or when it is computed from a
//! source column whose name is ([`crate::lineage`]: through renames,
//! functions, `CASE`, subqueries, CTEs and unions). A column whose
//! lineage cannot be read from the SQL (a whole row of a table, say) is
//! refused unless it is pseudonymised or dropped, naming its expression.
//! A `*` that the SQL alone cannot expand is refused. The agent runs the
//! same check ([`check_job`]) on the plan it verified, and checks the
//! names the database describes again before extracting.

use std::collections::BTreeMap;
use std::fmt;

use crate::lineage::{ColumnLineage, lineage};
use crate::output_columns::output_columns;
use crate::{ColumnPolicy, PersonalData, Plan};

/// One reason a plan is refused by the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyProblem {
    /// A personal-data column without a policy.
    Unclassified {
        job: String,
        column: String,
        category: String,
    },
    /// A column computed from a personal-data column, without a policy.
    Derived {
        job: String,
        column: String,
        source: String,
        category: String,
        expression: String,
    },
    /// A column whose sources cannot be known from the SQL, sent in clear.
    Undetermined {
        job: String,
        column: String,
        expression: String,
        reason: String,
    },
    /// A policy for a column the job does not return.
    UnknownColumn { job: String, column: String },
    /// The job's output columns cannot be found from its SQL.
    Unreadable { job: String, reason: String },
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unclassified {
                job,
                column,
                category,
            } => write!(
                f,
                "job {job}: column {column} is personal data ({category}) and has no policy; add {column} = \"send\" | \"pseudonymise\" | \"drop\" to its [jobs.columns]"
            ),
            Self::Derived {
                job,
                column,
                source,
                category,
                expression,
            } => write!(
                f,
                "job {job}: column {column} is computed from {source}, personal data ({category}), by `{expression}`, and has no policy; add {column} = \"pseudonymise\" | \"drop\" to its [jobs.columns] (or \"send\" if the analysis needs the value in clear)"
            ),
            Self::Undetermined {
                job,
                column,
                expression,
                reason,
            } => write!(
                f,
                "job {job}: column {column} (`{expression}`) may carry personal data that the SQL does not show: {reason}; or give {column} = \"pseudonymise\" | \"drop\" in its [jobs.columns]"
            ),
            Self::UnknownColumn { job, column } => write!(
                f,
                "job {job}: [jobs.columns] gives column {column} a policy, but the job's SELECT does not return a column of that name (a typo would let the data leave under its real name)"
            ),
            Self::Unreadable { job, reason } => write!(f, "job {job}: {reason}"),
        }
    }
}

/// Every problem of `plan`'s jobs, in job order (empty: the plan passes).
pub fn check_personal_data(plan: &Plan) -> Vec<PolicyProblem> {
    let list = plan.personal_data_list();
    plan.jobs
        .iter()
        .flat_map(|job| check_job(&job.name, &job.sql, &job.columns, &list))
        .collect()
}

/// Why one output column, given `policy`, would send personal data its
/// name does not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineageFinding {
    /// Computed from a personal-data source column, without a policy.
    Derived { source: String, category: String },
    /// Its sources cannot be known, and it would be sent in clear.
    Undetermined { reason: String },
}

/// The finding on one output column (`None`: nothing to add). Pseudonymised
/// or dropped, nothing leaves in clear; `send` is the plan's explicit
/// choice for a known value, but not for a value nobody can see (a whole
/// row).
pub fn lineage_finding(
    lineage: &ColumnLineage,
    policy: Option<ColumnPolicy>,
    list: &PersonalData,
) -> Option<LineageFinding> {
    match (&lineage.sources, policy) {
        (_, Some(ColumnPolicy::Pseudonymise | ColumnPolicy::Drop)) => None,
        (Err(e), None | Some(ColumnPolicy::Send)) => Some(LineageFinding::Undetermined {
            reason: e.to_string(),
        }),
        (Ok(_), Some(ColumnPolicy::Send)) => None,
        (Ok(sources), None) => sources.iter().find_map(|s| {
            list.classify(s).map(|c| LineageFinding::Derived {
                source: s.clone(),
                category: c.category.to_string(),
            })
        }),
    }
}

/// The problems of one job: its SQL against its policies.
pub fn check_job(
    job: &str,
    sql: &str,
    policies: &BTreeMap<String, ColumnPolicy>,
    list: &PersonalData,
) -> Vec<PolicyProblem> {
    let unreadable = |reason: String| {
        vec![PolicyProblem::Unreadable {
            job: job.to_string(),
            reason,
        }]
    };
    let columns = match output_columns(sql) {
        Ok(c) => c,
        Err(e) => return unreadable(e.to_string()),
    };
    let lineages = match lineage(sql) {
        Ok(l) if l.len() == columns.len() => l,
        Ok(l) => {
            return unreadable(format!(
                "its SQL returns {} columns, but their lineage was read for {}",
                columns.len(),
                l.len()
            ));
        }
        Err(e) => return unreadable(e.to_string()),
    };
    let mut out = Vec::new();
    for (column, lineage) in columns.iter().zip(&lineages) {
        let policy = policies.get(column);
        if policy.is_none()
            && let Some(c) = list.classify(column)
        {
            out.push(PolicyProblem::Unclassified {
                job: job.to_string(),
                column: column.clone(),
                category: c.category.to_string(),
            });
            continue;
        }
        match lineage_finding(lineage, policy.copied(), list) {
            None => {}
            Some(LineageFinding::Derived { source, category }) => {
                out.push(PolicyProblem::Derived {
                    job: job.to_string(),
                    column: column.clone(),
                    source,
                    category,
                    expression: lineage.expression.clone(),
                });
            }
            Some(LineageFinding::Undetermined { reason }) => {
                out.push(PolicyProblem::Undetermined {
                    job: job.to_string(),
                    column: column.clone(),
                    expression: lineage.expression.clone(),
                    reason,
                });
            }
        }
    }
    for column in policies.keys() {
        if !columns.contains(column) {
            out.push(PolicyProblem::UnknownColumn {
                job: job.to_string(),
                column: column.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(extra: &str, sql: &str, columns: &str) -> Plan {
        let text = format!(
            "format = 1\nversion = 1\nissued_at = 2026-01-01T00:00:00Z\nexpires_at = 2027-01-01T00:00:00Z\n\
             scope = \"all\"\n{extra}\n[[jobs]]\nname = \"j\"\ntarget = \"t\"\nmode = \"snapshot\"\n\
             sql = '''{sql}'''\nschedule = {{ cron = \"0 3 * * *\" }}\n[jobs.columns]\n{columns}\n"
        );
        Plan::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_personal_column_without_policy_is_named_with_its_category() {
        let p = plan(
            "",
            "SELECT c.nu_cns, c.no_cidadao, c.co_seq FROM tb_fat_cidadao_pec c",
            "nu_cns = \"pseudonymise\"",
        );
        let problems = check_personal_data(&p);
        assert_eq!(
            problems,
            [PolicyProblem::Unclassified {
                job: "j".into(),
                column: "no_cidadao".into(),
                category: "name".into()
            }]
        );
        assert!(
            problems[0]
                .to_string()
                .contains("job j: column no_cidadao is personal data (name) and has no policy"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn aliases_are_what_counts() {
        // The column leaves as dt_nascimento, whatever its source.
        let p = plan(
            "",
            "SELECT t.dt_registro AS dt_nascimento FROM tb_dim_tempo t",
            "",
        );
        assert!(matches!(
            check_personal_data(&p).as_slice(),
            [PolicyProblem::Unclassified { category, .. }] if category == "birth date"
        ));
        let p = plan(
            "",
            "SELECT t.dt_registro AS dt_nascimento FROM tb_dim_tempo t",
            "dt_nascimento = \"drop\"",
        );
        assert_eq!(check_personal_data(&p), []);
    }

    #[test]
    fn the_plan_extends_the_list() {
        let sql = "SELECT nu_pis, co_seq FROM t";
        assert_eq!(check_personal_data(&plan("", sql, "")), []);
        let p = plan("personal_data = [\"nu_pis\"]", sql, "");
        assert!(matches!(
            check_personal_data(&p).as_slice(),
            [PolicyProblem::Unclassified { column, category, .. }]
                if column == "nu_pis" && category == crate::personal_data::PLAN_CATEGORY
        ));
        let e = Plan::parse(
            b"format = 1\nversion = 1\nissued_at = 2026-01-01T00:00:00Z\nexpires_at = 2027-01-01T00:00:00Z\nscope = \"all\"\npersonal_data = [\"nu_pis\", \"NU X\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.field, "personal_data[1]", "{e}");
        assert_eq!(e.line, 6, "{e}");
    }

    #[test]
    fn stars_and_typos_are_refused() {
        let p = plan("", "SELECT * FROM tb_fat_cidadao_pec", "");
        let problems = check_personal_data(&p);
        assert!(
            matches!(problems.as_slice(), [PolicyProblem::Unreadable { .. }]),
            "{problems:?}"
        );
        assert!(problems[0].to_string().contains("name the columns"));
        let p = plan(
            "",
            "SELECT nu_cpf_cidadao FROM t",
            "nu_cpf_cidadao = \"drop\"\nnu_cpf = \"drop\"",
        );
        assert_eq!(
            check_personal_data(&p),
            [PolicyProblem::UnknownColumn {
                job: "j".into(),
                column: "nu_cpf".into()
            }]
        );
    }

    /// The ten expressions a review found accepted, each sending personal
    /// data in clear under a name not on the list.
    const TRIED: [(&str, &str); 10] = [
        (
            "SELECT c.nu_cpf_cidadao AS documento FROM tb_fat_cidadao_pec c",
            "nu_cpf_cidadao",
        ),
        ("SELECT upper(c.nu_cns) FROM tb_fat_cidadao_pec c", "nu_cns"),
        (
            "SELECT coalesce(nu_cpf_cidadao, nu_cns) FROM tb_fat_cidadao_pec",
            "nu_cns",
        ),
        ("SELECT 'id:' || nu_cns FROM tb_fat_cidadao_pec", "nu_cns"),
        (
            "SELECT CASE WHEN c.nu_cpf_cidadao IS NOT NULL THEN c.nu_cpf_cidadao ELSE c.nu_cns END AS doc FROM tb_fat_cidadao_pec c",
            "nu_cns",
        ),
        (
            "SELECT row_to_json(v)::text AS dados FROM tb_fat_visita_domiciliar v",
            "row_to_json(v)::TEXT",
        ),
        (
            "SELECT a.co_seq_fat_atd_ind, (SELECT c.nu_cpf_cidadao FROM tb_fat_cidadao_pec c WHERE c.co_seq_fat_cidadao_pec = a.co_fat_cidadao_pec) AS ref FROM tb_fat_atendimento_individual a",
            "nu_cpf_cidadao",
        ),
        (
            "WITH x AS (SELECT no_cidadao AS rotulo, co_seq_fat_cidadao_pec FROM tb_fat_cidadao_pec) SELECT x.rotulo, x.co_seq_fat_cidadao_pec FROM x",
            "no_cidadao",
        ),
        (
            "SELECT dt_nascimento::text AS dia FROM tb_fat_visita_domiciliar",
            "dt_nascimento",
        ),
        (
            "SELECT round(nu_latitude::numeric, 6) AS lat FROM tb_fat_visita_domiciliar",
            "nu_latitude",
        ),
    ];

    #[test]
    fn personal_data_under_another_name_is_refused() {
        for (sql, named) in TRIED {
            let problems = check_personal_data(&plan("", sql, ""));
            assert_eq!(problems.len(), 1, "{sql}: {problems:?}");
            let text = problems[0].to_string();
            assert!(
                matches!(
                    problems[0],
                    PolicyProblem::Derived { .. } | PolicyProblem::Undetermined { .. }
                ),
                "{sql}: {text}"
            );
            // The message names the job, the column's expression and the
            // personal-data source (or the whole-row reference).
            assert!(text.starts_with("job j: column "), "{text}");
            assert!(text.contains(named), "{sql}: {text}");
        }
        let p = plan("", TRIED[1].0, "");
        assert_eq!(
            check_personal_data(&p)[0].to_string(),
            "job j: column upper is computed from nu_cns, personal data (CNS), by `upper(c.nu_cns)`, and has no policy; add upper = \"pseudonymise\" | \"drop\" to its [jobs.columns] (or \"send\" if the analysis needs the value in clear)"
        );
        let p = plan("", TRIED[5].0, "");
        let text = check_personal_data(&p)[0].to_string();
        assert!(
            text.contains("reads whole rows of table tb_fat_visita_domiciliar"),
            "{text}"
        );
    }

    #[test]
    fn a_policy_on_the_derived_column_lets_it_pass() {
        for (sql, _) in TRIED {
            let columns = crate::output_columns::output_columns(sql).unwrap();
            for policy in ["pseudonymise", "drop"] {
                let list: String = columns
                    .iter()
                    .filter(|c| !c.starts_with("co_seq"))
                    .map(|c| format!("\"{c}\" = \"{policy}\"\n"))
                    .collect();
                assert_eq!(check_personal_data(&plan("", sql, &list)), [], "{sql}");
            }
        }
        // `send` is the explicit choice to send a value in clear; it does
        // not cover a whole row, whose contents nobody chose.
        let p = plan("", TRIED[0].0, "documento = \"send\"");
        assert_eq!(check_personal_data(&p), []);
        let p = plan("", TRIED[5].0, "dados = \"send\"");
        assert!(matches!(
            check_personal_data(&p).as_slice(),
            [PolicyProblem::Undetermined { .. }]
        ));
    }

    #[test]
    fn what_carries_no_personal_data_passes() {
        for sql in [
            "SELECT e.no_equipe AS equipe, e.co_seq_dim_equipe AS id FROM tb_dim_equipe e",
            "SELECT c.co_dim_equipe_vinc, count(*) AS pessoas, count(DISTINCT c.nu_cpf_cidadao) AS com_cpf \
             FROM tb_fat_cidadao_pec c JOIN tb_fat_visita_domiciliar v ON v.nu_cns = c.nu_cns \
             WHERE c.nu_cpf_cidadao IS NOT NULL GROUP BY c.co_dim_equipe_vinc ORDER BY min(c.nu_cns)",
            "SELECT a.co_seq_fat_atd_ind, row_number() OVER (PARTITION BY a.co_fat_cidadao_pec) AS n \
             FROM tb_fat_atendimento_individual a",
            "SELECT v.co_seq_fat_visita_domiciliar, \
             EXISTS (SELECT 1 FROM tb_fat_cidadao_pec c WHERE c.nu_cns = v.nu_cns) AS cadastrado \
             FROM tb_fat_visita_domiciliar v",
        ] {
            assert_eq!(check_personal_data(&plan("", sql, "")), [], "{sql}");
        }
        // A CPF pseudonymised through a CTE that renames it.
        let p = plan(
            "",
            "WITH p AS (SELECT c.nu_cpf_cidadao AS documento, c.co_seq_fat_cidadao_pec AS id \
             FROM tb_fat_cidadao_pec c) SELECT p.id, p.documento FROM p",
            "documento = \"pseudonymise\"",
        );
        assert_eq!(check_personal_data(&p), []);
    }

    #[test]
    fn the_example_plan_passes() {
        let p = Plan::parse(include_bytes!("../examples/pec-reference.plan.toml")).unwrap();
        assert_eq!(check_personal_data(&p), []);
    }

    #[test]
    fn the_example_plan_sends_no_citizen_data_in_clear() {
        let p = Plan::parse(include_bytes!("../examples/pec-reference.plan.toml")).unwrap();
        let list = p.personal_data_list();
        for job in &p.jobs {
            for (column, policy) in &job.columns {
                if *policy != ColumnPolicy::Send {
                    continue;
                }
                // Sent in clear: only a health unit's neighbourhood and an
                // age in years, never a value on the personal-data list.
                assert!(
                    matches!(
                        (job.name.as_str(), column.as_str()),
                        ("unidades_saude", "no_bairro") | ("lista_hipertensos", "nu_idade")
                    ),
                    "job {}: {column} is sent in clear",
                    job.name
                );
            }
            for l in lineage(&job.sql).unwrap() {
                let personal = list.classify(&l.name).is_some()
                    || l.sources
                        .unwrap()
                        .iter()
                        .any(|s| list.classify(s).is_some());
                if personal {
                    assert!(
                        job.columns.contains_key(&l.name),
                        "job {}: {}",
                        job.name,
                        l.name
                    );
                }
            }
        }
    }
}
