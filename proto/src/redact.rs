//! Keeps personal data out of logs and error messages. PostgreSQL quotes
//! the offending value in many messages (`invalid input syntax for type
//! integer: "João"`, `Key (nu_cpf)=(12345678901) already exists.`), in the
//! server's language and with its quote characters (`«João»` in Spanish);
//! those values may be personal data from a health record.
//!
//! So redaction goes by **SQLSTATE**, never by wording: [`RedactedDbError`]
//! keeps the code and its condition name always, and keeps the message,
//! detail and hint only when the error's class is one that never quotes
//! data ([`may_quote_data`] is false):
//!
//! | kept as sent | why |
//! |---|---|
//! | 08 connection, 28 authorization, 3D/3F unknown database/schema, 0B, 0L, 0P | connection parameters, role and object names |
//! | 21, 24, 25, 26, 2D, 34, 3B transaction/cursor state | fixed texts and object names |
//! | 40 transaction rollback (not 40002) | serialization and deadlock reports (process and transaction numbers) |
//! | 42 syntax error or access rule violation (not 42601) | identifiers and types from SQL text (`permission denied for table t`, `column "x" is of type integer but expression is of type text`) |
//! | 53 insufficient resources, 55 object state, 57 operator intervention, 58 system error, 72 snapshot, F0 config file | sizes, files, locks, cancellation |
//!
//! Everything else is withheld, notably: 22 data exception and 23 integrity
//! constraint violation (the value, the key, the failing row); 44 WITH CHECK
//! OPTION (the failing row); 42601 syntax error (the tsquery, jsonpath and
//! other input parsers quote the text they parse); 40002; 0A feature not
//! supported and 54 program limit exceeded (raised by input functions about
//! the value they read); P0 PL/pgSQL (`RAISE` texts built from rows); 00/01
//! notices and warnings (`RAISE NOTICE`); HV foreign data wrappers (a remote
//! server's text); XX internal; 38/39 external routines; and any class not
//! listed, including codes this table does not know. What remains of a
//! withheld error is the code, the condition name and the names of the
//! objects involved, taken from the error's structured fields (schema,
//! table, column, data type, constraint), which name catalog objects, never
//! values.
//!
//! The context (`where`) is never kept, whatever the class: COPY puts the
//! line it was reading there (`COPY t, line 3, column nome: "João"`) for any
//! error raised during the copy, a statement timeout included, and PL/pgSQL
//! quotes the statements it ran.
//!
//! One accepted gap: a cast of row data to an OID alias type (`regclass`,
//! `regtype`, `regproc`, `regrole`, `regnamespace`) reports the text as an
//! object name (42P01, 42704, 42883, 3F000). No job casts personal data to
//! those types.

mod sqlstate;

use std::fmt;

/// What a PostgreSQL error reports, as the client library parsed it. The
/// context (`where`) is deliberately absent: it is never kept.
#[derive(Debug, Default, Clone, Copy)]
pub struct PgErrorFields<'a> {
    /// The SQLSTATE (`22P02`).
    pub code: &'a str,
    pub message: &'a str,
    pub detail: Option<&'a str>,
    pub hint: Option<&'a str>,
    pub schema: Option<&'a str>,
    pub table: Option<&'a str>,
    pub column: Option<&'a str>,
    pub datatype: Option<&'a str>,
    pub constraint: Option<&'a str>,
}

/// A PostgreSQL error with its data values removed; its `Display` is what
/// logs, gRPC statuses and the control schema receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactedDbError {
    /// The SQLSTATE, or `?????` when the server sent something else.
    pub code: String,
    /// `invalid_text_representation`, or the class's name for a code this
    /// table does not know (`data_exception` for `22ZZZ`).
    pub condition: &'static str,
    /// The server's texts, when the class never quotes data; `None` when
    /// withheld.
    pub text: Option<KeptText>,
    /// Objects named by the error's structured fields: (kind, name).
    pub objects: Vec<(&'static str, String)>,
}

/// The texts of an error whose class never quotes data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptText {
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// Classes whose message, detail and hint never quote data (see the module
/// documentation for why each is safe).
const SAFE_CLASSES: &[&str] = &[
    "08", "0B", "0L", "0P", "21", "24", "25", "26", "28", "2D", "34", "3B", "3D", "3F", "40", "42",
    "53", "55", "57", "58", "72", "F0",
];

/// Codes of safe classes that do quote data.
const UNSAFE_CODES: &[&str] = &[
    // transaction_integrity_constraint_violation: a constraint's report.
    "40002",
    // syntax_error: also what the tsquery, jsonpath, ltree... input
    // functions raise, quoting the text they parse.
    "42601",
];

/// Whether a SQLSTATE's message, detail or hint may quote data values.
pub fn may_quote_data(code: &str) -> bool {
    !valid_code(code) || !SAFE_CLASSES.contains(&&code[..2]) || UNSAFE_CODES.contains(&code)
}

/// The condition name of a SQLSTATE (`22P02` → `invalid_text_representation`),
/// else its class's (`data_exception`), else `unknown`.
pub fn condition_name(code: &str) -> &'static str {
    let find = |c: &str| {
        sqlstate::CONDITIONS
            .binary_search_by(|(k, _)| (*k).cmp(c))
            .ok()
            .map(|i| sqlstate::CONDITIONS[i].1)
    };
    if !valid_code(code) {
        return "unknown";
    }
    find(code)
        .or_else(|| find(&format!("{}000", &code[..2])))
        .unwrap_or("unknown")
}

fn valid_code(code: &str) -> bool {
    code.len() == 5
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// At most PostgreSQL's identifier length, cut at a character boundary.
fn object_name(name: &str) -> String {
    name.char_indices()
        .take_while(|(i, c)| i + c.len_utf8() <= 63)
        .map(|(_, c)| c)
        .collect()
}

impl RedactedDbError {
    pub fn new(e: PgErrorFields<'_>) -> Self {
        let code = if valid_code(e.code) {
            e.code.to_string()
        } else {
            "?????".to_string()
        };
        let text = (!may_quote_data(e.code)).then(|| KeptText {
            message: e.message.to_string(),
            detail: e.detail.map(str::to_string),
            hint: e.hint.map(str::to_string),
        });
        let objects = [
            ("schema", e.schema),
            ("table", e.table),
            ("column", e.column),
            ("type", e.datatype),
            ("constraint", e.constraint),
        ]
        .into_iter()
        .filter_map(|(kind, name)| Some((kind, object_name(name.filter(|n| !n.is_empty())?))))
        .collect();
        Self {
            condition: condition_name(e.code),
            code,
            text,
            objects,
        }
    }

    /// Whether the server's texts were withheld.
    pub fn withheld(&self) -> bool {
        self.text.is_none()
    }
}

/// `22P02 invalid_text_representation (text withheld: it may quote data; column nome)`
/// or `42501 insufficient_privilege: permission denied for table t (detail: …) (hint: …)`.
impl fmt::Display for RedactedDbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.condition)?;
        match &self.text {
            Some(t) => {
                write!(f, ": {}", t.message)?;
                if let Some(d) = &t.detail {
                    write!(f, " (detail: {d})")?;
                }
                if let Some(h) = &t.hint {
                    write!(f, " (hint: {h})")?;
                }
            }
            None => {
                write!(f, " (text withheld: it may quote data")?;
                for (kind, name) in &self.objects {
                    write!(f, "; {kind} {name}")?;
                }
                write!(f, ")")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
