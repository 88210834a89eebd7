//! Keeps personal data out of logs and error messages. PostgreSQL quotes
//! the offending value in some messages (`invalid input syntax for type
//! integer: "João"`); those values may be personal data from a health
//! record, so they are replaced before a message is logged or sent.

/// Message prefixes whose quoted tail is a data value, not a name.
const VALUE_BEARING: &[&str] = &[
    "invalid input syntax",
    "invalid input value",
    "malformed array literal",
    "malformed range literal",
    "malformed record literal",
    "value too long",
    "date/time field value out of range",
    "time zone displacement out of range",
    "invalid byte sequence",
    "character with byte sequence",
];

/// Replaces the data value in a PostgreSQL error message by `<redacted>`.
pub fn pg_message(msg: &str) -> String {
    let lower = msg.to_ascii_lowercase();
    let Some(pos) = VALUE_BEARING.iter().filter_map(|p| lower.find(p)).min() else {
        return msg.to_string();
    };
    // Keep up to the first ':' after the prefix (the type / encoding named there).
    match msg[pos..].find(": ") {
        Some(colon) => format!("{}: <redacted>", &msg[..pos + colon]),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_redacted_names_kept() {
        assert_eq!(
            pg_message(r#"invalid input syntax for type integer: "João da Silva""#),
            "invalid input syntax for type integer: <redacted>"
        );
        assert_eq!(
            pg_message(r#"ERROR 22P02: invalid input value for enum humor: "xyz""#),
            "ERROR 22P02: invalid input value for enum humor: <redacted>"
        );
        assert_eq!(
            pg_message(r#"invalid byte sequence for encoding "UTF8": 0xff"#),
            r#"invalid byte sequence for encoding "UTF8": <redacted>"#
        );
        let kept = r#"permission denied for table segredo"#;
        assert_eq!(pg_message(kept), kept);
        let kept = r#"missing data for column "nome""#;
        assert_eq!(pg_message(kept), kept);
    }
}
