//! Names the `db-role` SQL carries to an administrator: the role, the
//! database and the tables the plan reads. That SQL is pasted into `psql`
//! (or run by `db-role --apply`) as a superuser, and the table names come
//! from the plan's SQL, so each name is a value here, never SQL text: it
//! is kept as the identifier PostgreSQL would resolve and rendered only by
//! [`quote_ident`] (always double-quoted, `"` doubled; a backslash is not
//! special inside a quoted identifier), and literals only by
//! [`quote_literal`]. A name with a NUL (which PostgreSQL cannot store and
//! which would cut `psql`'s line) or an empty one is refused.

use sqlparser::ast::{ObjectName, ObjectNamePart};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;
use thiserror::Error;

use transmissor_proto::names::{quote_ident, quote_literal};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("an empty name cannot be quoted")]
    Empty,
    #[error("a name or value with a NUL character cannot be quoted")]
    Nul,
    #[error("{name:?} is not a table name: {reason}")]
    Table { name: String, reason: String },
}

/// An SQL identifier (a role, a database, a schema, a table): the name as
/// PostgreSQL stores it. Renders quoted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ident(String);

impl Ident {
    /// The identifier named exactly `name` (no case folding: this is the
    /// stored name, as in `pg_roles.rolname`).
    pub fn new(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.contains('\0') {
            return Err(NameError::Nul);
        }
        Ok(Self(name.to_string()))
    }

    /// The name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An identifier as written in SQL: quoted ones as they are, unquoted
    /// ones folded to lower case as PostgreSQL does (ASCII letters only).
    fn from_sql(ident: &sqlparser::ast::Ident) -> Result<Self, NameError> {
        match ident.quote_style {
            Some(_) => Self::new(&ident.value),
            None => Self::new(&ident.value.to_ascii_lowercase()),
        }
    }
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&quote_ident(&self.0))
    }
}

/// A table, view or other relation: `table`, `schema.table` or
/// `database.schema.table`, each part an [`Ident`]. Renders each part
/// quoted (`"pec"."tb_cidadao"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    parts: Vec<Ident>,
}

impl TableName {
    /// A table named `name` without a schema.
    pub fn bare(name: &str) -> Result<Self, NameError> {
        Ok(Self {
            parts: vec![Ident::new(name)?],
        })
    }

    /// The relation a query names (`sqlparser`'s parse of the plan's SQL).
    pub fn from_object_name(name: &ObjectName) -> Result<Self, NameError> {
        let refuse = |reason: &str| NameError::Table {
            name: name.to_string().chars().take(200).collect(),
            reason: reason.to_string(),
        };
        if name.0.is_empty() || name.0.len() > 3 {
            return Err(refuse("1 to 3 dotted parts expected"));
        }
        let parts = name
            .0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => Ident::from_sql(i),
                ObjectNamePart::Function(_) => Err(refuse("a part is a function")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { parts })
    }

    /// A table named on the command line (`--table pec.tb_cidadao`,
    /// `--table '"Odd Name"'`), read with SQL's rules for identifiers;
    /// anything after the name is refused.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let refuse = |reason: String| NameError::Table {
            name: text.chars().take(200).collect(),
            reason,
        };
        let dialect = PostgreSqlDialect {};
        let mut parser = Parser::new(&dialect)
            .try_with_sql(text)
            .map_err(|e| refuse(e.to_string()))?;
        let name = parser
            .parse_object_name(false)
            .map_err(|e| refuse(e.to_string()))?;
        if parser.peek_token().token != Token::EOF {
            return Err(refuse("text after the name".to_string()));
        }
        Self::from_object_name(&name)
    }

    /// Its schema, when named.
    pub fn schema(&self) -> Option<&Ident> {
        self.parts.len().checked_sub(2).map(|i| &self.parts[i])
    }

    /// Its last part (the relation itself).
    pub fn relation(&self) -> &Ident {
        &self.parts[self.parts.len() - 1]
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A string literal for `value` ([`quote_literal`]), NUL refused.
pub fn literal(value: &str) -> Result<String, NameError> {
    if value.contains('\0') {
        return Err(NameError::Nul);
    }
    Ok(quote_literal(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted() {
        let q = |s: &str| Ident::new(s).unwrap().to_string();
        assert_eq!(q("tb_x"), r#""tb_x""#);
        assert_eq!(q(r#"a"b"#), r#""a""b""#);
        assert_eq!(q(r#"a\"; DROP TABLE x; --"#), r#""a\""; DROP TABLE x; --""#);
        assert_eq!(q("linha\nnova"), "\"linha\nnova\"");
        assert_eq!(Ident::new(""), Err(NameError::Empty));
        assert_eq!(Ident::new("a\0b"), Err(NameError::Nul));
        assert_eq!(literal("x\0"), Err(NameError::Nul));
    }

    #[test]
    fn table_names_fold_like_postgres() {
        let t = |s: &str| TableName::parse(s).unwrap().to_string();
        assert_eq!(t("Tb_X"), r#""tb_x""#);
        assert_eq!(t("pec.tb_cidadao"), r#""pec"."tb_cidadao""#);
        assert_eq!(t(r#""Pec"."Tb X""#), r#""Pec"."Tb X""#);
        assert_eq!(t("ÁgUa"), r#""Água""#);
        for bad in ["", "a;b", "a b", "a.b.c.d", "x; DROP TABLE y"] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
        let s = TableName::parse("pec.tb_x").unwrap();
        assert_eq!(s.schema().map(Ident::as_str), Some("pec"));
        assert_eq!(s.relation().as_str(), "tb_x");
        assert_eq!(TableName::parse("tb_x").unwrap().schema(), None);
    }
}
