//! The schema-evolution policy: how a target follows the PEC versions of
//! the municipalities that load it.
//!
//! Municipalities run different PEC releases, and the DW gains columns in
//! patch releases. A target's columns are the union of what its
//! municipalities send:
//!
//! - a column the target lacks is **added** (nullable, so existing rows read
//!   NULL) by the `Begin` of the transmission that brings it, and recorded
//!   with that transmission (`transmissor.target_columns.added_by`);
//! - a column a municipality does not send reads **NULL** in that
//!   municipality's new rows (the commit names the columns it inserts);
//! - a column sent with **another type** than the target's fails the
//!   transmission, naming the column, the target's type and the sent type:
//!   nothing is cast silently;
//! - a column sent **pseudonymised** where the target holds it in clear,
//!   or in clear where the target holds pseudonyms, fails the transmission
//!   the same way: a target column never mixes values and pseudonyms (a
//!   plan that changes a column's policy loads into a new target);
//! - column **order** does not matter (columns are matched by name);
//! - each municipality's current column set is kept per target
//!   (`transmissor.target_slices.columns`), so drift shows per municipality.

use super::schema::ColumnSpec;

/// What loading `sent` into a target that has `registered` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evolution {
    /// Columns to add to the target, in the order they were sent.
    pub added: Vec<ColumnSpec>,
}

/// A column sent otherwise than the target holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    /// Another type.
    Type {
        column: String,
        target_type: String,
        sent_type: String,
    },
    /// Pseudonyms where the target holds values in clear, or the reverse.
    Pseudonymised {
        column: String,
        /// What the target holds: pseudonyms (`true`) or values in clear.
        in_target: bool,
    },
}

/// Applies the policy; `Err` lists every column that changed.
pub fn evolve(
    registered: &[ColumnSpec],
    sent: &[ColumnSpec],
) -> Result<Evolution, Vec<SchemaChange>> {
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for s in sent {
        match registered.iter().find(|r| r.name == s.name) {
            None => added.push(s.clone()),
            // Named first: it explains a type change that comes with it.
            Some(r) if r.pseudonymised != s.pseudonymised => {
                changed.push(SchemaChange::Pseudonymised {
                    column: s.name.clone(),
                    in_target: r.pseudonymised,
                });
            }
            Some(r) if r.target_type != s.target_type => changed.push(SchemaChange::Type {
                column: s.name.clone(),
                target_type: r.target_type.clone(),
                sent_type: s.target_type.clone(),
            }),
            Some(_) => {}
        }
    }
    if changed.is_empty() {
        Ok(Evolution { added })
    } else {
        Err(changed)
    }
}

/// The error a transmission fails with when columns changed.
pub fn change_message(target: &str, changes: &[SchemaChange]) -> String {
    let list: Vec<String> = changes
        .iter()
        .map(|c| match c {
            SchemaChange::Type {
                column,
                target_type,
                sent_type,
            } => format!(
                "column {column} is {target_type} in the target but {sent_type} in this transmission"
            ),
            SchemaChange::Pseudonymised {
                column,
                in_target: true,
            } => format!(
                "column {column} holds pseudonyms in the target but values in clear in this transmission"
            ),
            SchemaChange::Pseudonymised {
                column,
                in_target: false,
            } => format!(
                "column {column} holds values in clear in the target but pseudonyms in this transmission"
            ),
        })
        .collect();
    let pseudonyms = changes
        .iter()
        .any(|c| matches!(c, SchemaChange::Pseudonymised { .. }));
    let advice = if pseudonyms {
        "a column never mixes values in clear and pseudonyms: load the job into a new target (and remove the values in clear from the old one if they must go)"
    } else {
        "cast the column in the job's query to the target's type, or load into a new target"
    };
    format!(
        "schema of target {target} changed: {}; the transmission was refused and nothing was cast ({advice})",
        list.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(n: &str, t: &str) -> ColumnSpec {
        ColumnSpec::builtin(n, t)
    }

    #[test]
    fn added_columns_are_added_missing_ones_are_fine() {
        let reg = vec![col("a", "integer"), col("b", "text")];
        assert_eq!(evolve(&reg, &reg), Ok(Evolution { added: vec![] }));
        // Older release: sends fewer columns.
        assert_eq!(
            evolve(&reg, &[col("a", "integer")]),
            Ok(Evolution { added: vec![] })
        );
        // Newer release: one more column, in another order.
        assert_eq!(
            evolve(
                &reg,
                &[col("c", "date"), col("b", "text"), col("a", "integer")]
            ),
            Ok(Evolution {
                added: vec![col("c", "date")]
            })
        );
    }

    #[test]
    fn type_changes_name_column_and_both_types() {
        let reg = vec![col("a", "integer"), col("b", "text")];
        let err = evolve(&reg, &[col("a", "bigint"), col("c", "date")]).unwrap_err();
        assert_eq!(
            err,
            vec![SchemaChange::Type {
                column: "a".into(),
                target_type: "integer".into(),
                sent_type: "bigint".into()
            }]
        );
        let msg = change_message("t", &err);
        assert!(
            msg.contains("column a is integer in the target but bigint in this transmission"),
            "{msg}"
        );
    }

    fn pseudonym(n: &str) -> ColumnSpec {
        ColumnSpec {
            pseudonymised: true,
            ..col(n, "text")
        }
    }

    #[test]
    fn values_and_pseudonyms_never_mix() {
        let clear = vec![col("nu_cns", "text"), col("b", "text")];
        // Same type, pseudonymised now: refused, naming the column.
        let err = evolve(&clear, &[pseudonym("nu_cns")]).unwrap_err();
        assert_eq!(
            err,
            vec![SchemaChange::Pseudonymised {
                column: "nu_cns".into(),
                in_target: false
            }]
        );
        let msg = change_message("t", &err);
        assert!(
            msg.contains(
                "schema of target t changed: column nu_cns holds values in clear in the target but pseudonyms in this transmission"
            ),
            "{msg}"
        );
        // The reverse, with a type change too: the pseudonym is what is named.
        let pseudo = vec![pseudonym("nu_cns")];
        let err = evolve(&pseudo, &[col("nu_cns", "character varying(15)")]).unwrap_err();
        assert_eq!(
            err,
            vec![SchemaChange::Pseudonymised {
                column: "nu_cns".into(),
                in_target: true
            }]
        );
        assert!(
            change_message("t", &err)
                .contains("holds pseudonyms in the target but values in clear")
        );
        // Pseudonyms into a pseudonym column, and a new pseudonym column: fine.
        assert_eq!(evolve(&pseudo, &pseudo), Ok(Evolution { added: vec![] }));
        assert_eq!(
            evolve(&clear, &[pseudonym("c")]),
            Ok(Evolution {
                added: vec![pseudonym("c")]
            })
        );
    }
}
