//! The lineage of one expression: what it reads, resolved in its scope.
//! Common forms are followed one by one; any other form counts every
//! column it mentions, and is refused if it holds a subquery.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments,
    InTarget, Query, Visit, Visitor,
};

use super::query::query;
use super::{Env, Lineage, Sources, Undetermined, union, union_all};
use crate::output_columns::{fold, object_last};

pub(super) fn expr(e: &Expr, env: &Env) -> Lineage {
    match e {
        Expr::Identifier(id) => env.unqualified(&fold(id), e),
        Expr::CompoundIdentifier(ids) => {
            let parts: Vec<String> = ids.iter().map(fold).collect();
            env.qualified(&parts, e)
        }
        Expr::QualifiedWildcard(name, _) => env.whole_row(&object_last(name), e),
        Expr::Wildcard(_) => Err(Undetermined::unknown(e, "`*` inside an expression")),
        Expr::Value(_) | Expr::TypedString(_) => Ok(Sources::new()),
        Expr::Nested(x)
        | Expr::UnaryOp { expr: x, .. }
        | Expr::Cast { expr: x, .. }
        | Expr::Collate { expr: x, .. }
        | Expr::IsNull(x)
        | Expr::IsNotNull(x)
        | Expr::IsTrue(x)
        | Expr::IsNotTrue(x)
        | Expr::IsFalse(x)
        | Expr::IsNotFalse(x)
        | Expr::IsUnknown(x)
        | Expr::IsNotUnknown(x)
        | Expr::Extract { expr: x, .. }
        | Expr::Ceil { expr: x, .. }
        | Expr::Floor { expr: x, .. } => expr(x, env),
        Expr::BinaryOp { left, right, .. }
        | Expr::IsDistinctFrom(left, right)
        | Expr::IsNotDistinctFrom(left, right)
        | Expr::AnyOp { left, right, .. }
        | Expr::AllOp { left, right, .. }
        | Expr::Like {
            expr: left,
            pattern: right,
            ..
        }
        | Expr::ILike {
            expr: left,
            pattern: right,
            ..
        }
        | Expr::SimilarTo {
            expr: left,
            pattern: right,
            ..
        }
        | Expr::AtTimeZone {
            timestamp: left,
            time_zone: right,
        } => all([&**left, &**right], env),
        Expr::Between {
            expr: x, low, high, ..
        } => all([&**x, &**low, &**high], env),
        Expr::Tuple(items) => all(items, env),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let mut acc = operand
                .as_deref()
                .map_or(Ok(Sources::new()), |o| expr(o, env));
            for w in conditions {
                acc = union(acc, all([&w.condition, &w.result], env));
            }
            match else_result {
                Some(x) => union(acc, expr(x, env)),
                None => acc,
            }
        }
        Expr::In {
            expr: x, target, ..
        } => {
            let target = match target {
                InTarget::List(list) => all(list, env),
                InTarget::Subquery(q) => subquery(q, env),
                InTarget::Unnest(u) => expr(u, env),
                other => Err(Undetermined::unknown(other, "an IN over a table")),
            };
            union(expr(x, env), target)
        }
        Expr::Subquery(q) | Expr::Exists { subquery: q, .. } => subquery(q, env),
        Expr::Function(f) => function(f, env),
        _ => mentions(e, env),
    }
}

fn all<'a>(items: impl IntoIterator<Item = &'a Expr>, env: &Env) -> Lineage {
    union_all(items, |x| expr(x, env))
}

/// Every column a subquery returns (correlated names resolve outwards).
fn subquery(q: &Query, env: &Env) -> Lineage {
    query(q, env)?.whole_row(q)
}

/// A function call: its arguments and `WITHIN GROUP` order (which is what
/// an ordered-set aggregate returns); not its `FILTER` or window, which
/// choose rows. `count` returns a number of rows whatever it counts.
fn function(f: &Function, env: &Env) -> Lineage {
    if is_count(f) {
        return Ok(Sources::new());
    }
    runs_sql(&object_last(&f.name), f)?;
    let mut acc = union(arguments(&f.args, env), arguments(&f.parameters, env));
    for o in &f.within_group {
        acc = union(acc, expr(&o.expr, env));
    }
    acc
}

/// Functions that read a table named by a value, or run SQL given as text
/// (by name prefix): what they return has no lineage the SQL shows.
const RUNS_SQL: [&str; 7] = [
    "query_to_xml",
    "table_to_xml",
    "cursor_to_xml",
    "schema_to_xml",
    "database_to_xml",
    "dblink",
    "xpath_table",
];

/// Refuses a function of [`RUNS_SQL`] (`at`: the call, for the message).
pub(super) fn runs_sql(name: &str, at: &impl std::fmt::Display) -> Result<(), Undetermined> {
    if RUNS_SQL.iter().any(|p| name.starts_with(p)) {
        return Err(Undetermined::unknown(
            at,
            format!(
                "{name} reads a table or runs a query given as text, which the SQL does not show"
            ),
        ));
    }
    Ok(())
}

/// PostgreSQL's `count` (unqualified or `pg_catalog.count`).
fn is_count(f: &Function) -> bool {
    let schema = (f.name.0.len() == 2)
        .then(|| f.name.0[0].as_ident().map(fold))
        .flatten();
    let catalog = f.name.0.len() == 1 || schema.as_deref() == Some("pg_catalog");
    catalog && object_last(&f.name) == "count"
}

fn arguments(args: &FunctionArguments, env: &Env) -> Lineage {
    match args {
        FunctionArguments::None => Ok(Sources::new()),
        FunctionArguments::Subquery(q) => subquery(q, env),
        FunctionArguments::List(list) => {
            let mut acc = union_all(&list.args, |a| function_arg(a, env));
            for clause in &list.clauses {
                acc = union(
                    acc,
                    match clause {
                        // These order, limit or filter the rows aggregated.
                        FunctionArgumentClause::OrderBy(_)
                        | FunctionArgumentClause::Limit(_)
                        | FunctionArgumentClause::Where(_)
                        | FunctionArgumentClause::IgnoreOrRespectNulls(_) => Ok(Sources::new()),
                        other => mentions(other, env),
                    },
                );
            }
            acc
        }
    }
}

pub(super) fn function_arg(a: &FunctionArg, env: &Env) -> Lineage {
    let arg = match a {
        FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg) => arg,
    };
    match arg {
        FunctionArgExpr::Expr(e) => expr(e, env),
        FunctionArgExpr::QualifiedWildcard(name) => env.whole_row(&object_last(name), a),
        _ => Err(Undetermined::unknown(a, "`*` as a function's argument")),
    }
}

/// Any other form: every column it mentions, whole rows included; a
/// subquery inside is not followed, so it is refused.
fn mentions<T: Visit + std::fmt::Display>(node: &T, env: &Env) -> Lineage {
    let mut v = Mentions {
        env,
        found: Sources::new(),
        outer: node.to_string(),
    };
    match node.visit(&mut v) {
        ControlFlow::Continue(()) => Ok(v.found),
        ControlFlow::Break(e) => Err(e),
    }
}

struct Mentions<'a> {
    env: &'a Env,
    found: Sources,
    outer: String,
}

impl Visitor for Mentions<'_> {
    type Break = Undetermined;

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<Undetermined> {
        let got = match e {
            Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::QualifiedWildcard(..)
            | Expr::Wildcard(_) => expr(e, self.env),
            Expr::Function(f) => wildcard_args(f, self.env),
            _ => Ok(Sources::new()),
        };
        match got {
            Ok(s) => {
                self.found.extend(s);
                ControlFlow::Continue(())
            }
            Err(u) => ControlFlow::Break(u),
        }
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<Undetermined> {
        ControlFlow::Break(Undetermined::unknown(
            &self.outer,
            format!(
                "the subquery `{}` inside it is not followed; compute it in a CTE or in FROM",
                super::fragment_of(q)
            ),
        ))
    }
}

/// Whole rows and `*` given to a function as arguments (the rest of its
/// arguments are visited as expressions).
fn wildcard_args(f: &Function, env: &Env) -> Lineage {
    let FunctionArguments::List(list) = &f.args else {
        return Ok(Sources::new());
    };
    if is_count(f) {
        return Ok(Sources::new());
    }
    let wildcards = list.args.iter().filter(|a| {
        !matches!(
            a,
            FunctionArg::Named {
                arg: FunctionArgExpr::Expr(_),
                ..
            } | FunctionArg::ExprNamed {
                arg: FunctionArgExpr::Expr(_),
                ..
            } | FunctionArg::Unnamed(FunctionArgExpr::Expr(_))
        )
    });
    union_all(wildcards, |a| function_arg(a, env))
}
