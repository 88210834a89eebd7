//! SQL identifiers that travel on the wire (target tables, job names,
//! columns). Targets and jobs must be plain lowercase identifiers; column
//! names may be anything the source returns and are always quoted.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "{what} {name:?} is not a valid name: use 1 to 63 lowercase letters, digits or '_', starting with a letter or '_'"
)]
pub struct NameError {
    pub what: &'static str,
    pub name: String,
}

/// Checks a target table or job name: `[a-z_][a-z0-9_]{0,62}`.
pub fn check_plain(what: &'static str, name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_lowercase() || (i > 0 && b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what,
            // The name is the caller's: only its start is kept for the message.
            name: name.chars().take(80).collect(),
        })
    }
}

/// Quotes any identifier for PostgreSQL (`"a""b"`).
pub fn quote_ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// Quotes a string literal for PostgreSQL as its `quote_literal` does: `'`
/// doubled, and when the value has a backslash, the `E'…'` form with each
/// backslash doubled, so that the literal means the same whatever
/// `standard_conforming_strings` is. (A NUL cannot be in a PostgreSQL
/// string; callers that take outside values refuse it first.)
pub fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names() {
        assert!(check_plain("target", "tb_fat_visita_domiciliar").is_ok());
        assert!(check_plain("target", "_x1").is_ok());
        for bad in ["", "1abc", "Upper", "a-b", "a b", "a;drop", &"a".repeat(64)] {
            assert!(check_plain("target", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("o'clock"), "'o''clock'");
        assert_eq!(quote_literal(r"a\'; x"), r"E'a\\''; x'");
        assert_eq!(quote_ident(r#"a\"b"#), r#""a\""b""#);
    }
}
