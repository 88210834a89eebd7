//! The column names a job's `SELECT` returns, read from its SQL without a
//! database (the signer has none), the way PostgreSQL names result columns:
//! an alias; else a column reference's last name; a cast takes its
//! operand's name; a function call its function's name; anything else
//! `?column?`. Unquoted identifiers fold to lowercase. A set operation
//! (`UNION` …) is named by its first branch.
//!
//! `*` and `t.*` are expanded only over what the query itself defines (a
//! CTE, a subquery in `FROM`); over a table, whose columns only the
//! database knows, they are refused: the plan must name the columns, so the
//! signer can see which personal data a job returns.

use sqlparser::ast::{
    Expr, Ident, ObjectName, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    Statement, TableAlias, TableFactor, With,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OutputColumnsError {
    #[error("its SQL cannot be read: {0}")]
    Parse(String),
    #[error("its SQL is not one SELECT")]
    NotOneSelect,
    #[error(
        "it selects {0}, whose columns cannot be known without the database; name the columns in the SELECT so the signer can check them for personal data"
    )]
    Wildcard(String),
    #[error("the personal data its columns may carry cannot be determined: {0}")]
    Lineage(#[from] crate::lineage::Undetermined),
}

/// The names of the columns `sql` returns, in order.
pub fn output_columns(sql: &str) -> Result<Vec<String>, OutputColumnsError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| OutputColumnsError::Parse(e.to_string()))?;
    match statements.as_slice() {
        [Statement::Query(q)] => query_columns(q, &Scope::default()),
        _ => Err(OutputColumnsError::NotOneSelect),
    }
}

/// The CTEs visible at a point of the query, innermost last.
#[derive(Default, Clone)]
struct Scope {
    ctes: Vec<(String, Vec<String>)>,
}

impl Scope {
    fn cte(&self, name: &str) -> Option<&Vec<String>> {
        self.ctes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }

    fn with(&self, with: Option<&With>) -> Result<Scope, OutputColumnsError> {
        let mut scope = self.clone();
        if let Some(with) = with {
            for cte in &with.cte_tables {
                // A CTE's columns: its alias list, else its query's. A CTE
                // that cannot be named (say, `SELECT *` over a table) is
                // left unresolved: only a `*` over it is refused.
                let cols = match aliased(&cte.alias) {
                    Some(cols) => Ok(cols),
                    None => query_columns(&cte.query, &scope),
                };
                if let Ok(cols) = cols {
                    scope.ctes.push((fold(&cte.alias.name), cols));
                }
            }
        }
        Ok(scope)
    }
}

fn query_columns(q: &Query, outer: &Scope) -> Result<Vec<String>, OutputColumnsError> {
    let scope = outer.with(q.with.as_ref())?;
    set_columns(&q.body, &scope)
}

fn set_columns(body: &SetExpr, scope: &Scope) -> Result<Vec<String>, OutputColumnsError> {
    match body {
        SetExpr::Select(s) => select_columns(s, scope),
        SetExpr::Query(q) => query_columns(q, scope),
        SetExpr::SetOperation { left, .. } => set_columns(left, scope),
        SetExpr::Values(v) => Ok((1..=v.rows.first().map_or(0, |r| r.content.len()))
            .map(|i| format!("column{i}"))
            .collect()),
        _ => Err(OutputColumnsError::NotOneSelect),
    }
}

fn select_columns(s: &Select, scope: &Scope) -> Result<Vec<String>, OutputColumnsError> {
    let mut out = Vec::new();
    for item in &s.projection {
        match item {
            SelectItem::UnnamedExpr(e) => out.push(expr_name(e)),
            SelectItem::ExprWithAlias { alias, .. } => out.push(fold(alias)),
            SelectItem::ExprWithAliases { aliases, .. } => out.extend(aliases.iter().map(fold)),
            SelectItem::Wildcard(_) => {
                for from in &s.from {
                    out.extend(relation_columns(&from.relation, scope, "*")?);
                    for join in &from.joins {
                        out.extend(relation_columns(&join.relation, scope, "*")?);
                    }
                }
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                let SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                    return Err(OutputColumnsError::Wildcard(item.to_string()));
                };
                let wanted = object_last(name);
                let shown = item.to_string();
                let found = s
                    .from
                    .iter()
                    .flat_map(|f| {
                        std::iter::once(&f.relation).chain(f.joins.iter().map(|j| &j.relation))
                    })
                    .find(|r| relation_name(r).as_deref() == Some(wanted.as_str()))
                    .ok_or_else(|| OutputColumnsError::Wildcard(shown.clone()))?;
                out.extend(relation_columns(found, scope, &shown)?);
            }
        }
    }
    Ok(out)
}

/// The name a `FROM` item is referred to by: its alias, else its table name.
fn relation_name(r: &TableFactor) -> Option<String> {
    match r {
        TableFactor::Table { name, alias, .. } => Some(
            alias
                .as_ref()
                .map_or_else(|| object_last(name), |a| fold(&a.name)),
        ),
        TableFactor::Derived { alias, .. } => alias.as_ref().map(|a| fold(&a.name)),
        _ => None,
    }
}

/// The columns of one `FROM` item, when the query itself defines them.
fn relation_columns(
    r: &TableFactor,
    scope: &Scope,
    shown: &str,
) -> Result<Vec<String>, OutputColumnsError> {
    let refused = || {
        let what = match r {
            TableFactor::Table { name, .. } if shown == "*" => format!("* over table {name}"),
            _ => shown.to_string(),
        };
        OutputColumnsError::Wildcard(what)
    };
    match r {
        TableFactor::Table {
            name, alias, args, ..
        } if args.is_none() => {
            if let Some(cols) = alias.as_ref().and_then(aliased) {
                return Ok(cols);
            }
            // Only an unqualified name can be a CTE.
            if name.0.len() == 1
                && let Some(cols) = scope.cte(&object_last(name))
            {
                return Ok(cols.clone());
            }
            Err(refused())
        }
        TableFactor::Derived {
            subquery, alias, ..
        } => match alias.as_ref().and_then(aliased) {
            Some(cols) => Ok(cols),
            None => query_columns(subquery, scope).map_err(|_| refused()),
        },
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            let mut out = relation_columns(&table_with_joins.relation, scope, shown)?;
            for j in &table_with_joins.joins {
                out.extend(relation_columns(&j.relation, scope, shown)?);
            }
            Ok(out)
        }
        _ => Err(refused()),
    }
}

/// Column aliases given with a table alias: `AS t (a, b)`.
fn aliased(alias: &TableAlias) -> Option<Vec<String>> {
    (!alias.columns.is_empty()).then(|| alias.columns.iter().map(|c| fold(&c.name)).collect())
}

/// PostgreSQL's name for an unaliased result column (`FigureColname`).
pub(crate) fn expr_name(e: &Expr) -> String {
    figure(e).map_or_else(unnamed, |(name, _)| name)
}

/// PostgreSQL's `FigureColnameInternal`: a name and how strong it is (2: a
/// column, function or subquery's name; 1: a type name or `case`, which a
/// weaker context replaces).
fn figure(e: &Expr) -> Option<(String, u8)> {
    match e {
        Expr::Identifier(id) => Some((fold(id), 2)),
        Expr::CompoundIdentifier(ids) => ids.last().map(|id| (fold(id), 2)),
        Expr::Nested(inner) => figure(inner),
        Expr::Cast {
            expr, data_type, ..
        } => match figure(expr) {
            Some(named) if named.1 == 2 => Some(named),
            _ => Some((data_type.to_string().to_lowercase(), 1)),
        },
        Expr::Function(f) => Some((object_last(&f.name), 2)),
        Expr::Case { else_result, .. } => match else_result.as_deref().and_then(figure) {
            Some(named) if named.1 == 2 => Some(named),
            _ => Some(("case".to_string(), 1)),
        },
        Expr::Exists { .. } => Some(("exists".to_string(), 2)),
        Expr::Array(_) => Some(("array".to_string(), 2)),
        // A scalar subquery is named after its column.
        Expr::Subquery(q) => query_columns(q, &Scope::default())
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|name| (name, 2)),
        _ => None,
    }
}

fn unnamed() -> String {
    "?column?".to_string()
}

pub(crate) fn object_last(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map_or_else(unnamed, fold)
}

/// An identifier as PostgreSQL stores it: unquoted ones fold to lowercase.
pub(crate) fn fold(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(sql: &str) -> Vec<String> {
        output_columns(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn names_follow_postgresql() {
        assert_eq!(
            cols(
                "SELECT v.nu_cns, nu_cpf AS \"Cpf\", t.dt_registro AS DT_NASCIMENTO, count(*), \
                 max(a.x) AS m, c.no_cidadao::text, CAST(c.nu_cep AS varchar), 1, (v.lat), \
                 1::text, lower(no_mae) FROM v"
            ),
            [
                "nu_cns",
                "Cpf",
                "dt_nascimento",
                "count",
                "m",
                "no_cidadao",
                "nu_cep",
                "?column?",
                "lat",
                "text",
                "lower"
            ]
        );
        assert_eq!(
            cols(
                "SELECT (SELECT c.nu_cns FROM c), CASE WHEN a THEN b ELSE c.x END, \
                 CASE WHEN a THEN b END, CASE WHEN a THEN b ELSE 1::text END, EXISTS (SELECT 1), \
                 ARRAY[1], coalesce(a, b) FROM t"
            ),
            ["nu_cns", "x", "case", "case", "exists", "array", "coalesce"]
        );
    }

    #[test]
    fn ctes_unions_and_subqueries() {
        assert_eq!(
            cols(
                "WITH a AS (SELECT x, y AS z FROM t) SELECT a.x, b.nu_cns FROM a JOIN b ON true \
                 UNION ALL SELECT 1, 2"
            ),
            ["x", "nu_cns"]
        );
        assert_eq!(
            cols("WITH a AS (SELECT x, y AS z FROM t) SELECT * FROM a"),
            ["x", "z"]
        );
        assert_eq!(
            cols("WITH a (p, q) AS (SELECT * FROM t) SELECT * FROM a"),
            ["p", "q"]
        );
        assert_eq!(
            cols("SELECT s.* FROM (SELECT nu_cns, no_cidadao FROM t) s"),
            ["nu_cns", "no_cidadao"]
        );
        assert_eq!(
            cols("SELECT * FROM (SELECT nu_cns FROM t) s JOIN (SELECT no_mae FROM u) r ON true"),
            ["nu_cns", "no_mae"]
        );
        assert_eq!(cols("VALUES (1, 2)"), ["column1", "column2"]);
    }

    #[test]
    fn stars_over_tables_are_refused() {
        for sql in [
            "SELECT * FROM tb_fat_cidadao_pec",
            "SELECT c.* FROM tb_fat_cidadao_pec c",
            "SELECT a.x, t.* FROM a JOIN tb t ON true",
            "WITH a AS (SELECT * FROM t) SELECT * FROM a",
            "SELECT * FROM (SELECT * FROM t) s",
            "SELECT x.* FROM t",
        ] {
            let e = output_columns(sql).unwrap_err();
            assert!(matches!(e, OutputColumnsError::Wildcard(_)), "{sql}: {e}");
            assert!(e.to_string().contains("name the columns"), "{e}");
        }
        let e = output_columns("SELECT * FROM tb_fat_cidadao_pec").unwrap_err();
        assert!(
            e.to_string().contains("* over table tb_fat_cidadao_pec"),
            "{e}"
        );
    }

    #[test]
    fn not_a_select() {
        assert!(matches!(
            output_columns("SELECT 1; SELECT 2"),
            Err(OutputColumnsError::NotOneSelect)
        ));
        assert!(matches!(
            output_columns("DELETE FROM t"),
            Err(OutputColumnsError::NotOneSelect)
        ));
        assert!(matches!(
            output_columns("SELEC x"),
            Err(OutputColumnsError::Parse(_))
        ));
    }
}
