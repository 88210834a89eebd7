//! Pseudonymised columns, rewritten row by row as COPY sends them, before
//! anything reaches the spool: each value of those columns becomes the
//! lowercase hex HMAC-SHA256 of the value's text, keyed by the agent's
//! pseudonym key ([`crate::pseudonym_key`]); NULL stays NULL. The job's
//! query casts those columns to `text` ([`super::minimise`]), so COPY text
//! and COPY binary carry the same bytes (text's binary form is its UTF-8
//! bytes) and one pseudonym is the same in both formats.
//!
//! - **COPY text**: fields are separated by tabs and the row ends with a
//!   newline; inside a field, backslash escapes (`\\`, `\t`, `\n`, `\r`,
//!   `\b`, `\f`, `\v`, `\ddd` octal, `\xhh` hex, `\` + any other character
//!   for itself) are decoded to the value's bytes before hashing; `\N` is
//!   NULL. The 64 hex digits need no escaping.
//! - **COPY binary**: a tuple of length-prefixed fields (-1: NULL), already
//!   checked by [`transmissor_proto::copy_binary::check_tuple`].
//!
//! Only the rows of a job with pseudonymised columns go through here; the
//! others are copied to the batch as they are. Per row it allocates nothing
//! (the escape decoder's buffer is reused; the HMAC state, keyed once, is
//! cloned on the stack).

use bytes::BytesMut;
use hmac::{KeyInit, Mac};
use thiserror::Error;

use transmissor_proto::copy_binary;

use crate::pipeline::spool::CopyFormat;
use crate::pseudonym_key::PseudonymKey;

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// Length of a pseudonym: 32 bytes in hex.
pub const PSEUDONYM_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PseudonymError {
    #[error("a COPY text row has {found} fields, expected {expected}")]
    FieldCount { found: usize, expected: usize },
    #[error("a COPY text row does not end with a newline")]
    Unterminated,
    #[error("a COPY binary tuple ended before field {0}")]
    Truncated(usize),
}

/// Rewrites the pseudonymised fields of a job's rows.
pub struct Pseudonymiser {
    mac: HmacSha256,
    format: CopyFormat,
    /// Per output column: whether it is pseudonymised.
    pseudonymised: Vec<bool>,
    /// The decoded value of the field being hashed (COPY text), reused.
    scratch: Vec<u8>,
}

impl Pseudonymiser {
    /// `pseudonymised[i]`: whether column `i` of the result is replaced.
    pub fn new(key: &PseudonymKey, format: CopyFormat, pseudonymised: Vec<bool>) -> Self {
        Self {
            mac: HmacSha256::new_from_slice(key.bytes()).expect("HMAC takes any key length"),
            format,
            pseudonymised,
            scratch: Vec::with_capacity(256),
        }
    }

    /// Appends `row` (one CopyData message) to `out` with its pseudonymised
    /// fields replaced.
    pub fn append_row(&mut self, row: &[u8], out: &mut BytesMut) -> Result<(), PseudonymError> {
        match self.format {
            CopyFormat::Text => self.append_text(row, out),
            CopyFormat::Binary => self.append_binary(row, out),
        }
    }

    fn append_text(&mut self, row: &[u8], out: &mut BytesMut) -> Result<(), PseudonymError> {
        let body = row
            .strip_suffix(b"\n")
            .ok_or(PseudonymError::Unterminated)?;
        let expected = self.pseudonymised.len();
        let mut found = 0usize;
        for (i, field) in body.split(|&b| b == b'\t').enumerate() {
            found += 1;
            if i > 0 {
                out.extend_from_slice(b"\t");
            }
            match self.pseudonymised.get(i) {
                Some(true) if field != b"\\N" => {
                    unescape_into(field, &mut self.scratch);
                    let digest = self.digest(&self.scratch);
                    out.extend_from_slice(&digest);
                }
                _ => out.extend_from_slice(field),
            }
        }
        if found != expected {
            return Err(PseudonymError::FieldCount { found, expected });
        }
        out.extend_from_slice(b"\n");
        Ok(())
    }

    fn append_binary(&mut self, tuple: &[u8], out: &mut BytesMut) -> Result<(), PseudonymError> {
        // The field count, as it came (check_tuple compared it already).
        out.extend_from_slice(tuple.get(..2).ok_or(PseudonymError::Truncated(0))?);
        let mut n = 0usize;
        for (i, field) in copy_binary::fields(tuple).enumerate() {
            n += 1;
            match (self.pseudonymised.get(i), field) {
                (Some(true), Some(value)) => {
                    let digest = self.digest(value);
                    out.extend_from_slice(&copy_binary::field_len(Some(PSEUDONYM_LEN)));
                    out.extend_from_slice(&digest);
                }
                (_, value) => {
                    out.extend_from_slice(&copy_binary::field_len(value.map(<[u8]>::len)));
                    out.extend_from_slice(value.unwrap_or_default());
                }
            }
        }
        if n != self.pseudonymised.len() {
            return Err(PseudonymError::Truncated(n));
        }
        Ok(())
    }

    /// The pseudonym of `value`: lowercase hex of its HMAC-SHA256.
    fn digest(&self, value: &[u8]) -> [u8; PSEUDONYM_LEN] {
        let mut mac = self.mac.clone();
        mac.update(value);
        let tag = mac.finalize().into_bytes();
        let mut hex = [0u8; PSEUDONYM_LEN];
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in tag.iter().enumerate() {
            hex[2 * i] = DIGITS[usize::from(b >> 4)];
            hex[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        hex
    }

    /// The pseudonym of one value's text (for tools and tests).
    pub fn pseudonym(&self, value: &[u8]) -> String {
        String::from_utf8(self.digest(value).to_vec()).expect("hex digits are ASCII")
    }
}

/// Decodes one COPY text field's backslash escapes into `out` (cleared
/// first): the value's bytes. PostgreSQL writes `\\`, `\b`, `\f`, `\n`,
/// `\r`, `\t`, `\v` and `\` before the delimiter; `\ddd` and `\xhh` are read
/// as well, like COPY FROM does, and `\` before any other byte stands for
/// that byte.
pub fn unescape_into(field: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i == field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match field.get(i).and_then(|d| char::from(*d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
}

#[cfg(test)]
#[path = "pseudonym_tests.rs"]
mod tests;
