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

use crate::lineage::lineage;
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
        match (&lineage.sources, policy) {
            // Pseudonymised or dropped: nothing leaves in clear.
            (_, Some(ColumnPolicy::Pseudonymise | ColumnPolicy::Drop)) => {}
            (Err(e), None | Some(ColumnPolicy::Send)) => {
                out.push(PolicyProblem::Undetermined {
                    job: job.to_string(),
                    column: column.clone(),
                    expression: lineage.expression.clone(),
                    reason: e.to_string(),
                });
            }
            // Sent in clear by the plan's explicit choice.
            (Ok(_), Some(ColumnPolicy::Send)) => {}
            (Ok(sources), None) => {
                if let Some((source, c)) = sources
                    .iter()
                    .find_map(|s| list.classify(s).map(|c| (s, c)))
                {
                    out.push(PolicyProblem::Derived {
                        job: job.to_string(),
                        column: column.clone(),
                        source: source.clone(),
                        category: c.category.to_string(),
                        expression: lineage.expression.clone(),
                    });
                }
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

    #[test]
    fn the_example_plan_passes() {
        let p = Plan::parse(include_bytes!("../examples/pec-reference.plan.toml")).unwrap();
        assert_eq!(check_personal_data(&p), []);
    }
}
