//! The lineage of queries: CTEs (recursive ones to a fixed point), set
//! operations, `VALUES`, `SELECT` lists and the `FROM` items they read.

use sqlparser::ast::{
    Cte, FunctionArg, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    TableAlias, TableFactor, TableWithJoins, With,
};

use super::expr::{expr, function_arg, runs_sql};
use super::{Column, Env, Lineage, Rel, Relation, Undetermined, fragment_of, union, union_all};
use crate::output_columns::{expr_name, fold, object_last};

/// Most rounds a recursive CTE's lineage may take to settle.
const MAX_ROUNDS: usize = 32;

pub(super) fn query(q: &Query, outer: &Env) -> Result<Relation, Undetermined> {
    let env = match &q.with {
        Some(with) => with_ctes(with, outer),
        None => outer.clone(),
    };
    set(&q.body, &env)
}

/// The scope a query's CTEs make. A CTE whose lineage cannot be known is
/// kept, and refused only where it is read.
fn with_ctes(with: &With, outer: &Env) -> Env {
    let mut env = outer.clone();
    for cte in &with.cte_tables {
        let name = fold(&cte.alias.name);
        let rel = if with.recursive {
            recursive(cte, &name, &env)
        } else {
            query(&cte.query, &env)
        };
        let rel = rel
            .map(|r| rename(r, &cte.alias))
            .unwrap_or_else(|e| Relation::opaque(Err(e)));
        env.ctes.push(std::rc::Rc::new((name, rel)));
    }
    env
}

/// A CTE of `WITH RECURSIVE`: read again with its own last lineage in
/// scope until nothing changes.
fn recursive(cte: &Cte, name: &str, env: &Env) -> Result<Relation, Undetermined> {
    let mut current = query(&cte.query, env)?;
    for _ in 0..MAX_ROUNDS {
        let mut inner = env.clone();
        let seen = rename(current.clone(), &cte.alias);
        inner.ctes.push(std::rc::Rc::new((name.to_string(), seen)));
        let next = query(&cte.query, &inner)?;
        if next == current {
            return Ok(current);
        }
        current = next;
    }
    Err(Undetermined::unknown(
        &cte.alias.name,
        "this recursive CTE's lineage does not settle",
    ))
}

fn set(body: &SetExpr, env: &Env) -> Result<Relation, Undetermined> {
    match body {
        SetExpr::Select(s) => select(s, env),
        SetExpr::Query(q) => query(q, env),
        SetExpr::SetOperation { left, right, .. } => {
            let (l, r) = (set(left, env)?, set(right, env)?);
            if !l.open.tables.is_empty() || !r.open.tables.is_empty() {
                return Err(Undetermined::unknown(
                    body,
                    "a set operation over `*` of a table: name the columns",
                ));
            }
            if l.columns.len() != r.columns.len() {
                return Err(Undetermined::unknown(
                    body,
                    "the branches return different numbers of columns",
                ));
            }
            let columns = l
                .columns
                .into_iter()
                .zip(r.columns)
                .map(|(a, b)| Column {
                    name: a.name,
                    text: a.text,
                    lineage: union(a.lineage, b.lineage),
                })
                .collect();
            Ok(Relation {
                columns,
                open: super::Open {
                    tables: Vec::new(),
                    extra: union(l.open.extra, r.open.extra),
                },
            })
        }
        SetExpr::Values(v) => {
            let width = v.rows.first().map_or(0, |r| r.content.len());
            let columns = (0..width)
                .map(|i| Column {
                    name: format!("column{}", i + 1),
                    text: format!("VALUES column {}", i + 1),
                    lineage: union_all(v.rows.iter().filter_map(|row| row.content.get(i)), |e| {
                        expr(e, env)
                    }),
                })
                .collect();
            Ok(Relation {
                columns,
                ..Relation::default()
            })
        }
        _ => Err(Undetermined::unknown(body, "not a SELECT")),
    }
}

fn select(s: &Select, env: &Env) -> Result<Relation, Undetermined> {
    let mut level = Vec::new();
    for from in &s.from {
        from_item(from, env, &mut level);
    }
    let inner = env.push(level.clone());
    let mut out = Relation::default();
    for item in &s.projection {
        match item {
            SelectItem::UnnamedExpr(e) => out.columns.push(Column {
                name: expr_name(e),
                text: fragment_of(e),
                lineage: expr(e, &inner),
            }),
            SelectItem::ExprWithAlias { expr: e, alias } => out.columns.push(Column {
                name: fold(alias),
                text: fragment_of(e),
                lineage: expr(e, &inner),
            }),
            SelectItem::ExprWithAliases { expr: e, aliases } => {
                let lineage = expr(e, &inner);
                for alias in aliases {
                    out.columns.push(Column {
                        name: fold(alias),
                        text: fragment_of(e),
                        lineage: lineage.clone(),
                    });
                }
            }
            SelectItem::Wildcard(_) => {
                for rel in &level {
                    out.merge(&rel.relation);
                }
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                let SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                    return Err(Undetermined::unknown(item, "`*` of an expression"));
                };
                let wanted = object_last(name);
                let rel = level
                    .iter()
                    .find(|r| r.name.as_deref() == Some(wanted.as_str()))
                    .ok_or_else(|| {
                        Undetermined::unknown(item, format!("no FROM item {wanted} here"))
                    })?;
                out.merge(&rel.relation);
            }
        }
    }
    Ok(out)
}

/// Adds a `FROM` item and its joins to `level`. Every item sees the ones
/// before it (as if `LATERAL`: reading too much is safe).
fn from_item(from: &TableWithJoins, env: &Env, level: &mut Vec<Rel>) {
    factor(&from.relation, env, level);
    for join in &from.joins {
        factor(&join.relation, env, level);
    }
}

fn factor(tf: &TableFactor, env: &Env, level: &mut Vec<Rel>) {
    let lateral = env.push(level.clone());
    let (name, relation) = match tf {
        TableFactor::Table {
            name, alias, args, ..
        } => {
            let reference = alias
                .as_ref()
                .map_or_else(|| object_last(name), |a| fold(&a.name));
            let relation = match args {
                Some(a) => opaque(
                    runs_sql(&object_last(name), tf).and_then(|()| args_lineage(&a.args, &lateral)),
                    alias.as_ref(),
                ),
                None => {
                    let cte = (name.0.len() == 1)
                        .then(|| env.cte(&object_last(name)))
                        .flatten();
                    let base = cte
                        .cloned()
                        .unwrap_or_else(|| Relation::table(name.to_string()));
                    renamed(base, alias.as_ref())
                }
            };
            (Some(reference), relation)
        }
        TableFactor::Derived {
            subquery, alias, ..
        } => {
            let relation = query(subquery, &lateral).unwrap_or_else(|e| Relation::opaque(Err(e)));
            (
                alias.as_ref().map(|a| fold(&a.name)),
                renamed(relation, alias.as_ref()),
            )
        }
        TableFactor::TableFunction { expr: e, alias } => (
            alias.as_ref().map(|a| fold(&a.name)),
            opaque(expr(e, &lateral), alias.as_ref()),
        ),
        TableFactor::Function {
            name, args, alias, ..
        } => (
            Some(
                alias
                    .as_ref()
                    .map_or_else(|| object_last(name), |a| fold(&a.name)),
            ),
            opaque(
                runs_sql(&object_last(name), tf).and_then(|()| args_lineage(args, &lateral)),
                alias.as_ref(),
            ),
        ),
        TableFactor::UNNEST {
            alias, array_exprs, ..
        } => {
            let lineage = union_all(array_exprs, |e| expr(e, &lateral));
            (
                alias.as_ref().map(|a| fold(&a.name)),
                opaque(lineage, alias.as_ref()),
            )
        }
        TableFactor::NestedJoin {
            table_with_joins,
            alias,
        } => {
            let mut inner = Vec::new();
            from_item(table_with_joins, &lateral, &mut inner);
            if let Some(alias) = alias {
                let mut all = Relation::default();
                for r in &inner {
                    all.merge(&r.relation);
                }
                level.push(Rel {
                    name: Some(fold(&alias.name)),
                    relation: renamed(all, Some(alias)),
                });
            }
            level.extend(inner);
            return;
        }
        other => (
            None,
            Relation::opaque(Err(Undetermined::unknown(
                other,
                "this kind of FROM item is not followed by the personal-data check",
            ))),
        ),
    };
    level.push(Rel { name, relation });
}

/// A function's result in `FROM`: every column carries its arguments.
fn opaque(lineage: Lineage, alias: Option<&TableAlias>) -> Relation {
    let mut rel = Relation::opaque(lineage.clone());
    if let Some(alias) = alias {
        rel.columns = alias
            .columns
            .iter()
            .map(|c| Column {
                name: fold(&c.name),
                text: fold(&c.name),
                lineage: lineage.clone(),
            })
            .collect();
    }
    rel
}

fn args_lineage(args: &[FunctionArg], env: &Env) -> Lineage {
    union_all(args, |a| function_arg(a, env))
}

fn renamed(rel: Relation, alias: Option<&TableAlias>) -> Relation {
    match alias {
        None => rel,
        Some(a) => rename(rel, a),
    }
}

/// Column aliases (`AS x (a, b)`) rename the first columns by position;
/// over a table's own columns, which only the database knows, the renamed
/// columns' lineage is unknown.
fn rename(mut rel: Relation, alias: &TableAlias) -> Relation {
    for (i, c) in alias.columns.iter().enumerate() {
        let name = fold(&c.name);
        match rel.columns.get_mut(i) {
            Some(col) if rel.open.tables.is_empty() => col.name = name,
            _ => {
                let lineage = Err(Undetermined::unknown(
                    alias,
                    "column aliases rename a table's columns by position, which only the database knows: alias the columns in a SELECT instead",
                ));
                if i < rel.columns.len() {
                    rel.columns[i] = Column {
                        name: name.clone(),
                        text: name,
                        lineage,
                    };
                } else {
                    rel.columns.push(Column {
                        name: name.clone(),
                        text: name,
                        lineage,
                    });
                }
            }
        }
    }
    rel
}
