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

/// A column sent with a type other than the target's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeChange {
    pub column: String,
    pub target_type: String,
    pub sent_type: String,
}

/// Applies the policy; `Err` lists every column whose type changed.
pub fn evolve(
    registered: &[ColumnSpec],
    sent: &[ColumnSpec],
) -> Result<Evolution, Vec<TypeChange>> {
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for s in sent {
        match registered.iter().find(|r| r.name == s.name) {
            None => added.push(s.clone()),
            Some(r) if r.target_type != s.target_type => changed.push(TypeChange {
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

/// The error a transmission fails with when types changed.
pub fn type_change_message(target: &str, changes: &[TypeChange]) -> String {
    let list: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "column {} is {} in the target but {} in this transmission",
                c.column, c.target_type, c.sent_type
            )
        })
        .collect();
    format!(
        "schema of target {target} changed: {}; the transmission was refused and nothing was cast (cast the column in the job's query to the target's type, or load into a new target)",
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
            vec![TypeChange {
                column: "a".into(),
                target_type: "integer".into(),
                sent_type: "bigint".into()
            }]
        );
        let msg = type_change_message("t", &err);
        assert!(
            msg.contains("column a is integer in the target but bigint in this transmission"),
            "{msg}"
        );
    }
}
