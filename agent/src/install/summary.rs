//! What an install or uninstall did, one line per path or step:
//!
//! ```text
//! created    /etc/transmissor/agent.toml
//! repaired   /etc/transmissor/db-password (mode 644 → 600)
//! unchanged  /var/lib/transmissor/identity
//! ```

use std::fmt;

/// What happened to one path or step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// Its content changed.
    Updated,
    /// Owner or mode put back; what was wrong.
    Repaired(String),
    Unchanged,
    Removed,
    /// Nothing to remove.
    Absent,
    /// Left in place on purpose; why.
    Kept(String),
    /// An action run (e.g. `systemctl restart`).
    Done,
    /// Not done; why.
    Skipped(String),
    /// Done, and it failed (the doctor's checks); why.
    Failed(String),
}

impl Outcome {
    fn verb(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Repaired(_) => "repaired",
            Self::Unchanged => "unchanged",
            Self::Removed => "removed",
            Self::Absent => "absent",
            Self::Kept(_) => "kept",
            Self::Done => "done",
            Self::Skipped(_) => "skipped",
            Self::Failed(_) => "FAILED",
        }
    }

    /// Whether anything on disk or in the service manager changed.
    pub fn changed(&self) -> bool {
        matches!(
            self,
            Self::Created | Self::Updated | Self::Repaired(_) | Self::Removed | Self::Done
        )
    }

    /// Folds a repair into an outcome (a file both rewritten and
    /// re-owned is reported as rewritten).
    pub fn and(self, other: Outcome) -> Outcome {
        match (self, other) {
            (Self::Unchanged, o) => o,
            (Self::Repaired(a), Self::Repaired(b)) => Self::Repaired(format!("{a}, {b}")),
            (s, _) => s,
        }
    }
}

/// One line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// A path on the target system, or a step (`user transmissor`, `systemctl enable …`).
    pub what: String,
    pub outcome: Outcome,
    /// More about it (e.g. the agent's id after enrolling).
    pub note: Option<String>,
}

/// Every line, in the order done.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// `--root`, when not `/`.
    pub root: Option<String>,
    pub items: Vec<Item>,
    /// What to do next, printed at the end.
    pub next: Vec<String>,
}

impl Summary {
    pub fn add(&mut self, what: impl Into<String>, outcome: Outcome) {
        self.items.push(Item {
            what: what.into(),
            outcome,
            note: None,
        });
    }

    pub fn add_note(&mut self, what: impl Into<String>, outcome: Outcome, note: impl Into<String>) {
        self.items.push(Item {
            what: what.into(),
            outcome,
            note: Some(note.into()),
        });
    }

    /// Whether any line changed something.
    pub fn changed(&self) -> bool {
        self.items.iter().any(|i| i.outcome.changed())
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(root) = &self.root {
            writeln!(f, "root: {root}")?;
        }
        for i in &self.items {
            write!(f, "{:<10} {}", i.outcome.verb(), i.what)?;
            match &i.outcome {
                Outcome::Repaired(why)
                | Outcome::Kept(why)
                | Outcome::Skipped(why)
                | Outcome::Failed(why) => write!(f, " ({why})")?,
                _ => {}
            }
            if let Some(n) = &i.note {
                write!(f, ": {n}")?;
            }
            writeln!(f)?;
        }
        for n in &self.next {
            writeln!(f, "{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut s = Summary::default();
        s.add("/etc/transmissor", Outcome::Unchanged);
        s.add(
            "/etc/transmissor/db-password",
            Outcome::Repaired("mode 644 → 600".into()),
        );
        s.add_note("identity", Outcome::Created, "agent x");
        assert_eq!(
            s.to_string(),
            "unchanged  /etc/transmissor\nrepaired   /etc/transmissor/db-password (mode 644 → 600)\ncreated    identity: agent x\n"
        );
        assert!(s.changed());
        assert_eq!(
            Outcome::Unchanged.and(Outcome::Repaired("a".into())),
            Outcome::Repaired("a".into())
        );
        assert_eq!(
            Outcome::Updated.and(Outcome::Repaired("a".into())),
            Outcome::Updated
        );
    }
}
