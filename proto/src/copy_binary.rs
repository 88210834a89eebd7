//! PostgreSQL's COPY binary framing, as far as transmissor needs it.
//!
//! A `COPY ... TO STDOUT (FORMAT binary)` stream is a 19-byte header
//! (signature, flags, header-extension length, extension), then one tuple
//! per row — `i16` field count, then per field an `i32` length (-1 for NULL)
//! and that many bytes — then the trailer, a field count of -1. PostgreSQL
//! sends each tuple as one CopyData message (the header rides in the first
//! one, the trailer is the last one).
//!
//! The agent strips the header and the trailer and checks every tuple's
//! structure before spooling it, so a batch is whole tuples only; the
//! collector wraps each batch in [`HEADER`] and [`TRAILER`] when it loads it.
//! The fields' contents are checked by the analytic server's `recv`
//! functions.

/// Signature, flags 0, no header extension.
pub const HEADER: [u8; 19] = *b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Field count -1.
pub const TRAILER: [u8; 2] = [0xff, 0xff];

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyBinaryError {
    #[error("COPY binary stream does not start with the PGCOPY signature")]
    Signature,
    #[error("COPY binary header uses flags {0:#x} (OIDs or unknown critical flags)")]
    Flags(u32),
    #[error("COPY binary header is truncated")]
    TruncatedHeader,
    #[error("tuple is truncated at byte {0}")]
    Truncated(usize),
    #[error("tuple has {found} fields, expected {expected}")]
    FieldCount { found: i16, expected: i16 },
    #[error("field {field} has invalid length {len}")]
    FieldLength { field: usize, len: i32 },
    #[error("{0} trailing bytes after the tuple")]
    Trailing(usize),
}

/// Splits the header off the first message of a COPY binary stream;
/// returns what follows it (the first tuple, possibly the trailer).
pub fn strip_header(msg: &[u8]) -> Result<&[u8], CopyBinaryError> {
    if msg.len() < SIGNATURE.len() || &msg[..SIGNATURE.len()] != SIGNATURE {
        return Err(CopyBinaryError::Signature);
    }
    let rest = &msg[SIGNATURE.len()..];
    let (flags, rest) = read_u32(rest).ok_or(CopyBinaryError::TruncatedHeader)?;
    // Bits 0-15 are reserved for critical flags (bit 16 means OIDs included).
    if flags != 0 {
        return Err(CopyBinaryError::Flags(flags));
    }
    let (ext, rest) = read_u32(rest).ok_or(CopyBinaryError::TruncatedHeader)?;
    rest.get(ext as usize..)
        .ok_or(CopyBinaryError::TruncatedHeader)
}

/// Whether a message is the trailer.
pub fn is_trailer(msg: &[u8]) -> bool {
    msg == TRAILER
}

/// Checks that `msg` is exactly one tuple of `fields` fields.
pub fn check_tuple(msg: &[u8], fields: i16) -> Result<(), CopyBinaryError> {
    let mut pos = 0usize;
    let n = i16::from_be_bytes(
        msg.get(0..2)
            .and_then(|b| b.try_into().ok())
            .ok_or(CopyBinaryError::Truncated(0))?,
    );
    pos += 2;
    if n != fields {
        return Err(CopyBinaryError::FieldCount {
            found: n,
            expected: fields,
        });
    }
    for field in 0..n.max(0) as usize {
        let len = i32::from_be_bytes(
            msg.get(pos..pos + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or(CopyBinaryError::Truncated(pos))?,
        );
        pos += 4;
        if len == -1 {
            continue;
        }
        if len < 0 {
            return Err(CopyBinaryError::FieldLength { field, len });
        }
        pos = pos
            .checked_add(len as usize)
            .filter(|&end| end <= msg.len())
            .ok_or(CopyBinaryError::Truncated(pos))?;
    }
    if pos != msg.len() {
        return Err(CopyBinaryError::Trailing(msg.len() - pos));
    }
    Ok(())
}

/// The fields of a tuple that passed [`check_tuple`], in order: `None` is
/// NULL. On bytes that did not pass it, the iteration stops where the
/// structure breaks.
pub fn fields(tuple: &[u8]) -> Fields<'_> {
    Fields {
        rest: tuple.get(2..).unwrap_or_default(),
    }
}

/// Iterator of [`fields`].
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let (len, rest) = read_u32(self.rest)?;
        let len = len as i32;
        if len == -1 {
            self.rest = rest;
            return Some(None);
        }
        let (value, rest) = rest.split_at_checked(usize::try_from(len).ok()?)?;
        self.rest = rest;
        Some(Some(value))
    }
}

/// The 4-byte length that precedes a field's bytes (-1: NULL).
pub fn field_len(len: Option<usize>) -> [u8; 4] {
    len.map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX))
        .to_be_bytes()
}

/// Encodes one tuple (for tests and tools): `None` is NULL.
pub fn encode_tuple(fields: &[Option<&[u8]>], out: &mut Vec<u8>) {
    out.extend_from_slice(&(fields.len() as i16).to_be_bytes());
    for f in fields {
        match f {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

fn read_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = b.split_at_checked(4)?;
    Some((u32::from_be_bytes(head.try_into().ok()?), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_a_checked_tuple() {
        let mut t = Vec::new();
        encode_tuple(&[Some(b"abc"), None, Some(b"")], &mut t);
        check_tuple(&t, 3).unwrap();
        let got: Vec<Option<&[u8]>> = fields(&t).collect();
        assert_eq!(got, [Some(&b"abc"[..]), None, Some(&b""[..])]);
        // A broken tuple ends the iteration instead of reading past it.
        assert_eq!(fields(&t[..t.len() - 4]).count(), 2);
        assert_eq!(fields(&t[..t.len() - 5]).count(), 1);
        assert_eq!(field_len(None), [0xff; 4]);
        assert_eq!(field_len(Some(64)), [0, 0, 0, 64]);
    }

    #[test]
    fn header_round_trip() {
        let mut msg = HEADER.to_vec();
        encode_tuple(&[Some(b"abc"), None], &mut msg);
        let rest = strip_header(&msg).unwrap();
        check_tuple(rest, 2).unwrap();
        assert!(is_trailer(&TRAILER));
    }

    #[test]
    fn refuses_bad_structure() {
        let mut t = Vec::new();
        encode_tuple(&[Some(b"abc"), None], &mut t);
        assert_eq!(
            check_tuple(&t, 3),
            Err(CopyBinaryError::FieldCount {
                found: 2,
                expected: 3
            })
        );
        assert!(matches!(
            check_tuple(&t[..t.len() - 1], 2),
            Err(CopyBinaryError::Truncated(_))
        ));
        let mut long = t.clone();
        long.push(0);
        assert_eq!(check_tuple(&long, 2), Err(CopyBinaryError::Trailing(1)));
        assert_eq!(strip_header(b"PGCOPY\n"), Err(CopyBinaryError::Signature));
        let mut oids = HEADER.to_vec();
        oids[11..15].copy_from_slice(&0x10000u32.to_be_bytes());
        assert_eq!(strip_header(&oids), Err(CopyBinaryError::Flags(0x10000)));
    }
}
