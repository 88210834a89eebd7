//! What the two signed document kinds (plans and key lists) share: strict
//! TOML decoding, and errors that name the line and the field.
//!
//! Every error is a [`DocError`]: `line 14, jobs[2].schedule.cron: ...`.
//! Semantic checks take the line from a `toml::Spanned` field; TOML's own
//! errors (syntax, unknown or missing field, wrong type) carry a byte span,
//! and the field is found by walking the parsed document to that span.
//! Array indices in field paths count from 0.

use std::fmt;
use std::ops::Range;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use thiserror::Error;
use toml::Spanned;
use toml::de::{DeTable, DeValue};
use toml::value::Datetime;

/// A document that cannot be accepted, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct DocError {
    /// 1-based line; 0 when the document has no position (e.g. not UTF-8).
    pub line: usize,
    /// 1-based column, for TOML syntax errors (which name no field).
    pub column: Option<usize>,
    /// Dotted path of the field (`jobs[2].schedule.cron`); empty when none.
    pub field: String,
    pub message: String,
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = Vec::new();
        if self.line > 0 {
            place.push(format!("line {}", self.line));
        }
        if let Some(column) = self.column {
            place.push(format!("column {column}"));
        }
        if !self.field.is_empty() {
            place.push(self.field.clone());
        }
        if place.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", place.join(", "), self.message)
        }
    }
}

/// The document being validated: its text, to turn byte offsets into lines.
pub(crate) struct Source<'a> {
    text: &'a str,
}

impl<'a> Source<'a> {
    /// Requires UTF-8 and at most `max_bytes`.
    pub(crate) fn new(bytes: &'a [u8], max_bytes: usize) -> Result<Self, DocError> {
        if bytes.len() > max_bytes {
            return Err(DocError {
                line: 0,
                column: None,
                field: String::new(),
                message: format!("document is larger than {max_bytes} bytes"),
            });
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Self { text }),
            Err(e) => Err(DocError {
                line: line_of(bytes, e.valid_up_to()),
                column: None,
                field: String::new(),
                message: "document is not valid UTF-8".to_string(),
            }),
        }
    }

    /// Deserialises the whole document, mapping TOML's errors to lines and fields.
    pub(crate) fn decode<T: DeserializeOwned>(&self) -> Result<T, DocError> {
        toml::from_str(self.text).map_err(|e| self.toml_error(&e))
    }

    fn toml_error(&self, e: &toml::de::Error) -> DocError {
        let span = e.span();
        let field = match (&span, DeTable::parse(self.text)) {
            (Some(span), Ok(root)) => field_at(root.get_ref(), span.start),
            _ => String::new(),
        };
        // TOML's messages may end in a newline; keep them on one line.
        let message = e.message().trim_end().replace('\n', " ");
        let mut column = None;
        if let (Some(span), true) = (&span, field.is_empty()) {
            // A syntax error has no field: say where on the line it is.
            let line_start = self.text[..span.start.min(self.text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            column = self
                .text
                .get(line_start..span.start)
                .map(|s| s.chars().count() + 1);
        }
        DocError {
            line: span.map_or(0, |s| self.line(s.start)),
            column,
            field,
            message,
        }
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line(&self, offset: usize) -> usize {
        line_of(self.text.as_bytes(), offset)
    }

    /// The span of item `index` of the top-level array `key`, for errors
    /// about one element of a long array (only on the error path).
    pub(crate) fn item_span(&self, key: &str, index: usize) -> Option<Range<usize>> {
        let root = DeTable::parse(self.text).ok()?;
        match root.get_ref().get(key)?.get_ref() {
            DeValue::Array(items) => items.get(index).map(Spanned::span),
            _ => None,
        }
    }

    /// An error at a spanned value.
    pub(crate) fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> DocError {
        DocError {
            line: self.line(span.start),
            column: None,
            field: field.into(),
            message: message.into(),
        }
    }

    /// A TOML offset date-time as UTC; local date-times are refused.
    pub(crate) fn datetime(
        &self,
        value: &Spanned<Datetime>,
        field: &str,
    ) -> Result<DateTime<Utc>, DocError> {
        let dt = value.get_ref();
        if dt.date.is_none() || dt.time.is_none() || dt.offset.is_none() {
            return Err(self.err(
                value.span(),
                field,
                format!("{dt} needs a date, a time and an offset (e.g. 2026-11-30T12:00:00Z)"),
            ));
        }
        DateTime::parse_from_rfc3339(&dt.to_string())
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| {
                self.err(
                    value.span(),
                    field,
                    format!("{dt} is not a valid date-time: {e}"),
                )
            })
    }
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    1 + bytes[..end].iter().filter(|&&b| b == b'\n').count()
}

/// The path of the narrowest key, value or array item whose span holds
/// `pos`. Tables are not contiguous in TOML (a `[[jobs]]` table's span is
/// its header), so every entry is looked at, not only those inside a span.
fn field_at(table: &DeTable<'_>, pos: usize) -> String {
    let mut best: Option<(usize, String)> = None;
    walk_table(table, pos, "", &mut best);
    best.map(|(_, path)| path).unwrap_or_default()
}

fn consider(span: Range<usize>, pos: usize, path: &str, best: &mut Option<(usize, String)>) {
    // Ties go to the later, deeper entry (an array item over its array).
    let holds = span.contains(&pos) || (span.is_empty() && span.start == pos);
    if holds && best.as_ref().is_none_or(|(len, _)| span.len() <= *len) {
        *best = Some((span.len(), path.to_string()));
    }
}

fn walk_table(table: &DeTable<'_>, pos: usize, prefix: &str, best: &mut Option<(usize, String)>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        consider(key.span(), pos, &path, best);
        walk_value(value, pos, &path, best);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    pos: usize,
    path: &str,
    best: &mut Option<(usize, String)>,
) {
    consider(value.span(), pos, path, best);
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, pos, path, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(item, pos, &format!("{path}[{i}]"), best);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        a: u32,
        t: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        b: String,
    }

    #[test]
    fn toml_errors_name_line_and_field() {
        let text = "a = 1\n[[t]]\nb = \"x\"\n[[t]]\nb = \"y\"\nc = 3\n";
        let e = Source::new(text.as_bytes(), 1000)
            .unwrap()
            .decode::<Doc>()
            .unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert_eq!(e.field, "t[1].c", "{e}");
        assert!(e.message.contains("unknown field"), "{e}");

        let e = Source::new(b"a = \"one\"\n", 1000)
            .unwrap()
            .decode::<Doc>()
            .unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (1, "a"), "{e}");

        let e = Source::new(b"a = 1\nb = [\n", 1000)
            .unwrap()
            .decode::<Doc>()
            .unwrap_err();
        assert_eq!((e.line, e.column), (2, Some(6)), "{e}");
        assert!(e.to_string().starts_with("line 2, column 6: "), "{e}");
    }

    #[test]
    fn not_utf8_or_too_large() {
        let e = Source::new(b"a = 1\n\xff", 1000).err().unwrap();
        assert_eq!(e.line, 2);
        assert!(Source::new(&[b' '; 11], 10).is_err());
    }

    #[test]
    fn display() {
        let e = DocError {
            line: 3,
            column: None,
            field: "x".into(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "line 3, x: bad");
    }
}
