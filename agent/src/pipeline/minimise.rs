//! A plan job's personal-data policy, applied before any row is read: on
//! the column names the source describes (not on what the SQL seems to
//! return), every column of the personal-data list must have a policy and
//! every policy must name a returned column, or the job fails naming the
//! column (and its category). The signer's lineage check runs again on the
//! job's SQL ([`transmissor_plan::lineage`]): a described column computed
//! from a personal-data column (`upper(nu_cns) AS x`), or whose sources the
//! SQL does not show (`row_to_json(v)`), needs a policy too, so a plan
//! signed without the check is held to it. Then the query is wrapped so that dropped
//! columns never leave the database server and pseudonymised ones arrive
//! as text, ready for [`super::pseudonym`]:
//!
//! ```sql
//! SELECT "co_seq", "nu_cns"::text AS "nu_cns" FROM (<job sql>) AS transmissor_q
//! ```
//!
//! A job without `drop` or `pseudonymise` runs its query unchanged.
//! Local jobs (a config's `[[jobs]]`, development only) carry no policy.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use thiserror::Error;
use tokio_postgres::GenericClient;

use transmissor_plan::lineage::lineage;
use transmissor_plan::policy_check::{LineageFinding, lineage_finding};
use transmissor_plan::{ColumnPolicy, PersonalData};
use transmissor_proto::names::quote_ident;

use crate::pipeline::pseudonym::Pseudonymiser;
use crate::pipeline::source::{self, SourceError};
use crate::pipeline::spool::{ColumnMeta, CopyFormat};
use crate::pseudonym_key;

/// The policy of one plan job.
#[derive(Debug, Clone)]
pub struct JobPrivacy {
    /// Policy by column name, as the source returns it.
    pub columns: BTreeMap<String, ColumnPolicy>,
    /// The reference list plus the plan's own patterns.
    pub personal_data: Arc<PersonalData>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MinimiseError {
    #[error(
        "column {column} is personal data ({category}) and the plan gives it no policy; the job was not extracted (add {column} = \"send\" | \"pseudonymise\" | \"drop\" to the job's [jobs.columns])"
    )]
    Unclassified { column: String, category: String },
    #[error(
        "the plan gives column {column} the policy {policy}, but the job's query returns no column of that name (a typo would let the data leave under its real name); the job was not extracted"
    )]
    UnknownColumn {
        column: String,
        policy: ColumnPolicy,
    },
    #[error(
        "column {column} appears twice in the job's result and has a policy; give each an alias"
    )]
    Duplicate { column: String },
    #[error(
        "column {column} is computed from {source_column}, personal data ({category}), by `{expression}`, and the plan gives it no policy; the job was not extracted (add {column} = \"pseudonymise\" | \"drop\" to the job's [jobs.columns])"
    )]
    Derived {
        column: String,
        source_column: String,
        category: String,
        expression: String,
    },
    #[error(
        "column {column} (`{expression}`) may carry personal data that the SQL does not show: {reason}; the job was not extracted"
    )]
    Undetermined {
        column: String,
        expression: String,
        reason: String,
    },
    #[error("the plan drops every column of the job; nothing would be sent")]
    Empty,
}

/// What a job extracts after its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minimised {
    /// The query to COPY: the job's own, or the wrapping `SELECT`.
    pub query: String,
    /// The columns sent, pseudonymised ones flagged and typed `text`.
    pub columns: Vec<ColumnMeta>,
}

impl Minimised {
    /// The row rewriter of a job with pseudonymised columns (`None` for
    /// the others), keyed by the state directory's pseudonym key (made now
    /// if this is its first use).
    pub fn pseudonymiser(
        &self,
        state_dir: &Path,
        format: CopyFormat,
    ) -> Result<Option<Pseudonymiser>, SourceError> {
        let Some(flags) = self.pseudonymised() else {
            return Ok(None);
        };
        let (key, _) = pseudonym_key::load_or_create(state_dir)
            .map_err(|e| SourceError::Column(format!("the pseudonym key: {e}")))?;
        Ok(Some(Pseudonymiser::new(&key, format, flags)))
    }

    /// Per column sent: whether it is pseudonymised (`None`: no column is).
    pub fn pseudonymised(&self) -> Option<Vec<bool>> {
        let flags: Vec<bool> = self.columns.iter().map(|c| c.pseudonymised).collect();
        flags.contains(&true).then_some(flags)
    }
}

/// Checks the described columns against the policy and builds the query
/// (pure: no database).
pub fn plan(
    privacy: &JobPrivacy,
    query: &str,
    described: &[ColumnMeta],
) -> Result<(String, Vec<(ColumnMeta, ColumnPolicy)>), MinimiseError> {
    for (column, policy) in &privacy.columns {
        match described.iter().filter(|c| &c.name == column).count() {
            0 => {
                return Err(MinimiseError::UnknownColumn {
                    column: column.clone(),
                    policy: *policy,
                });
            }
            1 => {}
            _ => {
                return Err(MinimiseError::Duplicate {
                    column: column.clone(),
                });
            }
        }
    }
    let mut kept = Vec::with_capacity(described.len());
    for c in described {
        let policy = match privacy.columns.get(&c.name) {
            Some(p) => *p,
            None => {
                if let Some(found) = privacy.personal_data.classify(&c.name) {
                    return Err(MinimiseError::Unclassified {
                        column: c.name.clone(),
                        category: found.category.to_string(),
                    });
                }
                ColumnPolicy::Send
            }
        };
        if policy != ColumnPolicy::Drop {
            kept.push((c.clone(), policy));
        }
    }
    check_lineage(privacy, query, described)?;
    if kept.is_empty() {
        return Err(MinimiseError::Empty);
    }
    let changes = privacy.columns.values().any(|p| *p != ColumnPolicy::Send);
    if !changes {
        return Ok((query.to_string(), kept));
    }
    let list: Vec<String> = kept
        .iter()
        .map(|(c, p)| {
            let q = quote_ident(&c.name);
            match p {
                ColumnPolicy::Pseudonymise => format!("{q}::text AS {q}"),
                _ => q,
            }
        })
        .collect();
    // The job's SQL on its own lines: a trailing `-- comment` in it cannot
    // swallow the closing parenthesis.
    let wrapped = format!(
        "SELECT {} FROM (\n{query}\n) AS transmissor_q",
        list.join(", ")
    );
    Ok((wrapped, kept))
}

/// The signer's lineage check on the job's SQL, column by column against
/// the described names. SQL the check cannot read (a `*` over a table,
/// which only the signer refuses) is left to the described names.
fn check_lineage(
    privacy: &JobPrivacy,
    query: &str,
    described: &[ColumnMeta],
) -> Result<(), MinimiseError> {
    let Ok(lineages) = lineage(query) else {
        return Ok(());
    };
    if lineages.len() != described.len() {
        return Ok(());
    }
    for (c, l) in described.iter().zip(&lineages) {
        let policy = privacy.columns.get(&c.name).copied();
        match lineage_finding(l, policy, &privacy.personal_data) {
            None => {}
            Some(LineageFinding::Derived { source, category }) => {
                return Err(MinimiseError::Derived {
                    column: c.name.clone(),
                    source_column: source,
                    category,
                    expression: l.expression.clone(),
                });
            }
            Some(LineageFinding::Undetermined { reason }) => {
                return Err(MinimiseError::Undetermined {
                    column: c.name.clone(),
                    expression: l.expression.clone(),
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// Describes a job's result (`source::describe`) and, for a plan job,
/// applies its policy: what the job extracts.
pub async fn describe(
    client: &impl GenericClient,
    privacy: Option<&JobPrivacy>,
    query: &str,
) -> Result<Minimised, SourceError> {
    let described = source::describe(client, query).await?;
    match privacy {
        Some(p) => apply(client, p, query, described).await,
        None => Ok(Minimised {
            query: query.to_string(),
            columns: described,
        }),
    }
}

/// Applies `privacy` to a job whose result the source described as
/// `described`: checks, wraps, and describes the wrapped query again, so
/// the columns declared to the collector are exactly what COPY will send.
pub async fn apply(
    client: &impl GenericClient,
    privacy: &JobPrivacy,
    query: &str,
    described: Vec<ColumnMeta>,
) -> Result<Minimised, SourceError> {
    let (wrapped, kept) =
        plan(privacy, query, &described).map_err(|e| SourceError::Column(e.to_string()))?;
    if wrapped == query {
        return Ok(Minimised {
            query: wrapped,
            columns: described,
        });
    }
    let mut columns = source::describe(client, &wrapped).await?;
    if columns.len() != kept.len() {
        return Err(SourceError::Column(format!(
            "the minimised query returns {} columns, expected {}",
            columns.len(),
            kept.len()
        )));
    }
    for (c, (orig, policy)) in columns.iter_mut().zip(&kept) {
        if *policy == ColumnPolicy::Pseudonymise {
            // The source's own type stays on record; the target is text.
            c.source_type.clone_from(&orig.source_type);
            c.pseudonymised = true;
        }
    }
    Ok(Minimised {
        query: wrapped,
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> ColumnMeta {
        ColumnMeta {
            name: name.into(),
            source_type: "character varying(15)".into(),
            target_type: "character varying(15)".into(),
            pseudonymised: false,
        }
    }

    fn privacy(policies: &[(&str, ColumnPolicy)]) -> JobPrivacy {
        JobPrivacy {
            columns: policies.iter().map(|(c, p)| (c.to_string(), *p)).collect(),
            personal_data: Arc::new(PersonalData::with_plan_patterns(&["nu_pis".into()])),
        }
    }

    #[test]
    fn drop_and_pseudonymise_wrap_the_query() {
        let p = privacy(&[
            ("nu_cns", ColumnPolicy::Pseudonymise),
            ("no_cidadao", ColumnPolicy::Drop),
            ("Nu Cpf\"x", ColumnPolicy::Pseudonymise),
            ("dt_nascimento", ColumnPolicy::Send),
        ]);
        let cols = [
            col("co_seq"),
            col("nu_cns"),
            col("no_cidadao"),
            col("Nu Cpf\"x"),
            col("dt_nascimento"),
        ];
        let (q, kept) = plan(&p, "SELECT 1 -- x", &cols).unwrap();
        assert_eq!(
            q,
            "SELECT \"co_seq\", \"nu_cns\"::text AS \"nu_cns\", \"Nu Cpf\"\"x\"::text AS \"Nu Cpf\"\"x\", \"dt_nascimento\" FROM (\nSELECT 1 -- x\n) AS transmissor_q"
        );
        let names: Vec<&str> = kept.iter().map(|(c, _)| c.name.as_str()).collect();
        assert_eq!(names, ["co_seq", "nu_cns", "Nu Cpf\"x", "dt_nascimento"]);
    }

    #[test]
    fn only_send_leaves_the_query_alone() {
        let p = privacy(&[("no_cidadao", ColumnPolicy::Send)]);
        let (q, kept) = plan(&p, "SELECT x", &[col("a"), col("no_cidadao")]).unwrap();
        assert_eq!(q, "SELECT x");
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn unclassified_columns_name_the_category() {
        let p = privacy(&[("nu_cns", ColumnPolicy::Pseudonymise)]);
        let e = plan(&p, "q", &[col("nu_cns"), col("NU_CPF_CIDADAO")]).unwrap_err();
        assert_eq!(
            e,
            MinimiseError::Unclassified {
                column: "NU_CPF_CIDADAO".into(),
                category: "CPF".into()
            }
        );
        assert!(
            e.to_string().starts_with(
                "column NU_CPF_CIDADAO is personal data (CPF) and the plan gives it no policy"
            ),
            "{e}"
        );
        // The plan's own patterns count too.
        let e = plan(&p, "q", &[col("nu_cns"), col("nu_pis")]).unwrap_err();
        assert!(
            matches!(e, MinimiseError::Unclassified { ref category, .. } if category == "listed by the plan"),
            "{e}"
        );
    }

    #[test]
    fn columns_computed_from_personal_data_need_a_policy() {
        let p = privacy(&[]);
        let sql = "SELECT c.co_seq, upper(c.nu_cns) AS rotulo FROM tb_fat_cidadao_pec c";
        let e = plan(&p, sql, &[col("co_seq"), col("rotulo")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "column rotulo is computed from nu_cns, personal data (CNS), by `upper(c.nu_cns)`, and the plan gives it no policy; the job was not extracted (add rotulo = \"pseudonymise\" | \"drop\" to the job's [jobs.columns])"
        );
        let e = plan(
            &p,
            "SELECT row_to_json(c)::text AS dados FROM tb_fat_cidadao_pec c",
            &[col("dados")],
        )
        .unwrap_err();
        assert!(
            matches!(e, MinimiseError::Undetermined { .. })
                && e.to_string()
                    .contains("reads whole rows of table tb_fat_cidadao_pec"),
            "{e}"
        );
        // The policy is looked up by the described name.
        let p = privacy(&[("rotulo", ColumnPolicy::Pseudonymise)]);
        assert!(plan(&p, sql, &[col("co_seq"), col("rotulo")]).is_ok());
        // A plan's own pattern counts as a source too.
        let p = privacy(&[]);
        let e = plan(&p, "SELECT lower(nu_pis) AS p FROM t", &[col("p")]).unwrap_err();
        assert!(matches!(e, MinimiseError::Derived { .. }), "{e}");
    }

    #[test]
    fn policies_must_match_returned_columns() {
        let p = privacy(&[("nu_cpf", ColumnPolicy::Drop)]);
        let e = plan(&p, "q", &[col("a")]).unwrap_err();
        assert!(matches!(e, MinimiseError::UnknownColumn { .. }), "{e}");
        let p = privacy(&[("a", ColumnPolicy::Pseudonymise)]);
        let e = plan(&p, "q", &[col("a"), col("a")]).unwrap_err();
        assert!(matches!(e, MinimiseError::Duplicate { .. }), "{e}");
        let p = privacy(&[("a", ColumnPolicy::Drop)]);
        assert_eq!(
            plan(&p, "q", &[col("a")]).unwrap_err(),
            MinimiseError::Empty
        );
    }
}
