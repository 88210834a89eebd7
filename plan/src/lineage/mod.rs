//! Where each column a job's `SELECT` returns comes from: the set of source
//! column names its value is computed from, read from the SQL without a
//! database (the signer has none). The personal-data check
//! ([`crate::policy_check`]) classifies these sources, so that a value
//! leaves under a policy whatever it is renamed to or wrapped in.
//!
//! A column's lineage is the union of what its expression reads: through
//! casts, operators, functions, `CASE` (its conditions too: a `CASE` can
//! spell a value out), scalar, `IN` and `EXISTS` subqueries (their output
//! columns, correlated references resolved outwards), CTEs and derived
//! tables in `FROM` (a reference to their column follows that column's own
//! lineage; a recursive CTE to a fixed point), joins, and every branch of a
//! set operation. Names fold as PostgreSQL folds them. A qualified
//! reference `t.c` is column `c` of the `FROM` item `t`; an unqualified one
//! counts as a source column of that name *and* as every same-named column
//! of every CTE or subquery in scope (the database alone knows which table
//! has it; reading too much is safe, too little is not).
//!
//! What is *not* lineage, because it selects or orders rows without
//! putting the value in the output: `WHERE`, `JOIN … ON`, `GROUP BY`,
//! `HAVING`, `ORDER BY`, a window's `PARTITION BY`/`ORDER BY`, an
//! aggregate's `FILTER` and `ORDER BY`. Filtering by CPF does not send it.
//! One function is an exception: `count(…)` returns a number of rows, never
//! its argument, so `count(DISTINCT nu_cpf)` (how many people) is not
//! personal data. Requiring a policy for it would make plan writers write
//! `send` by reflex, and `send` must stay a deliberate choice. Every other
//! aggregate (`string_agg`, `min`, `json_agg`, `percentile_disc … WITHIN
//! GROUP`) returns values of its argument and carries its lineage.
//!
//! Refused, naming the expression ([`Undetermined`]): a whole-row reference
//! to a table (`row_to_json(v)`, `to_json(t)`, `v.*` in a function, a
//! bare alias), because only the database knows its columns; `*` inside an
//! expression; a subquery nested where this module does not follow it;
//! column aliases that rename a table's columns by position (`FROM t AS
//! x(a, b)`); `FROM` items of unknown kinds; functions that read a table
//! named by a value or run SQL given as text (`query_to_xml`,
//! `table_to_xml`, `dblink` …). A whole row of a CTE or subquery is the
//! union of its columns.
//!
//! Not caught: a lookup join *on* a personal-data column (joining
//! `tb_dim_tempo` on `co_dim_tempo_nascimento` and returning its date)
//! carries the value through a `JOIN … ON`, which is not lineage. The
//! output name check still applies, and the reference plan drops such a
//! column; the plan's reviewer has to see the join. Nor a view or a
//! function defined in the source database that renames a personal-data
//! column: the signer sees only the plan's SQL (the agent still checks the
//! names the database describes).

mod expr;
mod query;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::rc::Rc;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use thiserror::Error;

use crate::output_columns::OutputColumnsError;

/// Longest SQL fragment quoted in a message.
const FRAGMENT_CHARS: usize = 80;

/// Source column names (folded) a value is computed from.
pub type Sources = BTreeSet<String>;

/// A lineage, or why it cannot be known.
pub type Lineage = Result<Sources, Undetermined>;

/// Why the lineage of an expression cannot be known from the SQL.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Undetermined {
    #[error(
        "`{fragment}` reads whole rows of table {table}, whose columns only the database knows; name the columns instead"
    )]
    WholeRow { fragment: String, table: String },
    #[error("`{fragment}`: {why}")]
    Unknown { fragment: String, why: String },
}

impl Undetermined {
    fn unknown(fragment: &impl std::fmt::Display, why: impl Into<String>) -> Self {
        Self::Unknown {
            fragment: fragment_of(fragment),
            why: why.into(),
        }
    }
}

/// One output column: its PostgreSQL name, the expression that computes
/// it (as written, shortened) and its lineage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnLineage {
    pub name: String,
    pub expression: String,
    pub sources: Lineage,
}

/// The lineage of each column `sql` returns, in order. A `*` over a table
/// at the top is refused as [`crate::output_columns`] refuses it.
pub fn lineage(sql: &str) -> Result<Vec<ColumnLineage>, OutputColumnsError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| OutputColumnsError::Parse(e.to_string()))?;
    let [Statement::Query(q)] = statements.as_slice() else {
        return Err(OutputColumnsError::NotOneSelect);
    };
    let rel = query::query(q, &Env::default())?;
    if let Some(table) = rel.open.tables.first() {
        return Err(OutputColumnsError::Wildcard(format!(
            "* over table {table}"
        )));
    }
    Ok(rel
        .columns
        .into_iter()
        .map(|c| ColumnLineage {
            name: c.name,
            expression: c.text,
            sources: union(c.lineage, rel.open.extra.clone()),
        })
        .collect())
}

/// One column of a relation the query defines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    text: String,
    lineage: Lineage,
}

/// What a relation holds beyond its named columns: the tables a `*` passed
/// through (their columns pass by name; a whole row of them is refused),
/// and a lineage every column of it carries (a table function's arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Open {
    tables: Vec<String>,
    extra: Lineage,
}

impl Default for Open {
    fn default() -> Self {
        Self {
            tables: Vec::new(),
            extra: Ok(Sources::new()),
        }
    }
}

/// The columns of a query, a CTE or a `FROM` item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Relation {
    columns: Vec<Column>,
    open: Open,
}

impl Relation {
    fn table(name: String) -> Self {
        Self {
            columns: Vec::new(),
            open: Open {
                tables: vec![name],
                extra: Ok(Sources::new()),
            },
        }
    }

    fn opaque(extra: Lineage) -> Self {
        Self {
            columns: Vec::new(),
            open: Open {
                tables: Vec::new(),
                extra,
            },
        }
    }

    fn merge(&mut self, other: &Relation) {
        self.columns.extend(other.columns.iter().cloned());
        self.open.tables.extend(other.open.tables.iter().cloned());
        let extra = std::mem::replace(&mut self.open.extra, Ok(Sources::new()));
        self.open.extra = union(extra, other.open.extra.clone());
    }

    /// Column `name` of this relation (a qualified reference).
    fn column(&self, name: &str, at: &impl std::fmt::Display) -> Lineage {
        let mut acc = self.open.extra.clone();
        let mut found = false;
        for c in self.columns.iter().filter(|c| c.name == name) {
            found = true;
            acc = union(acc, c.lineage.clone());
        }
        if !found {
            if self.open.tables.is_empty() && self.open.extra == Ok(Sources::new()) {
                return Err(Undetermined::unknown(at, format!("no column {name} there")));
            }
            acc = union(acc, Ok(Sources::from([name.to_string()])));
        }
        acc
    }

    /// The whole row (`v`, `v.*`).
    fn whole_row(&self, at: &impl std::fmt::Display) -> Lineage {
        if let Some(table) = self.open.tables.first() {
            return Err(Undetermined::WholeRow {
                fragment: fragment_of(at),
                table: table.clone(),
            });
        }
        self.columns.iter().fold(self.open.extra.clone(), |acc, c| {
            union(acc, c.lineage.clone())
        })
    }
}

/// A `FROM` item: the name it is referred to by, and its relation.
#[derive(Debug, Clone)]
struct Rel {
    name: Option<String>,
    relation: Relation,
}

/// What a point of the query sees: its CTEs and its `FROM` items, the
/// innermost last.
#[derive(Debug, Clone, Default)]
struct Env {
    ctes: Vec<Rc<(String, Relation)>>,
    levels: Vec<Rc<Vec<Rel>>>,
}

impl Env {
    fn push(&self, level: Vec<Rel>) -> Env {
        let mut env = self.clone();
        env.levels.push(Rc::new(level));
        env
    }

    fn cte(&self, name: &str) -> Option<&Relation> {
        self.ctes.iter().rev().find(|c| c.0 == name).map(|c| &c.1)
    }

    fn rels(&self) -> impl Iterator<Item = &Rel> {
        self.levels.iter().rev().flat_map(|l| l.iter())
    }

    fn rel(&self, name: &str) -> Option<&Rel> {
        self.rels().find(|r| r.name.as_deref() == Some(name))
    }

    /// An unqualified name: that source column, every same-named column of
    /// a relation in scope, and a whole row if a `FROM` item has the name.
    fn unqualified(&self, name: &str, at: &impl std::fmt::Display) -> Lineage {
        let mut acc: Lineage = Ok(Sources::from([name.to_string()]));
        for rel in self.rels() {
            acc = union(acc, rel.relation.open.extra.clone());
            for c in rel.relation.columns.iter().filter(|c| c.name == name) {
                acc = union(acc, c.lineage.clone());
            }
        }
        if let Some(rel) = self.rel(name) {
            acc = union(acc, rel.relation.whole_row(at));
        }
        acc
    }

    /// `q.c`, `s.q.c` or `q.c.field`: every reading of the parts.
    fn qualified(&self, parts: &[String], at: &impl std::fmt::Display) -> Lineage {
        let mut acc: Lineage = Ok(Sources::new());
        let mut matched = false;
        for pair in parts.windows(2) {
            if let Some(rel) = self.rel(&pair[0]) {
                matched = true;
                acc = union(acc, rel.relation.column(&pair[1], at));
            }
        }
        if !matched {
            acc = Ok(parts.iter().skip(1).cloned().collect());
        }
        acc
    }

    /// `q.*` or a bare `q` used as a row.
    fn whole_row(&self, name: &str, at: &impl std::fmt::Display) -> Lineage {
        match self.rel(name) {
            Some(rel) => rel.relation.whole_row(at),
            None => Err(Undetermined::unknown(
                at,
                format!("no FROM item {name} in scope"),
            )),
        }
    }
}

/// Two lineages together; the first unknown wins.
fn union(a: Lineage, b: Lineage) -> Lineage {
    let mut a = a?;
    a.extend(b?);
    Ok(a)
}

/// The union of the lineages of `items`; the first unknown wins.
fn union_all<T>(items: impl IntoIterator<Item = T>, mut f: impl FnMut(T) -> Lineage) -> Lineage {
    items.into_iter().try_fold(Sources::new(), |mut acc, x| {
        acc.extend(f(x)?);
        Ok(acc)
    })
}

/// SQL text for a message, shortened.
fn fragment_of(x: &impl std::fmt::Display) -> String {
    let text = x
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text.chars().count() <= FRAGMENT_CHARS {
        text
    } else {
        let cut: String = text.chars().take(FRAGMENT_CHARS - 1).collect();
        format!("{cut}…")
    }
}
