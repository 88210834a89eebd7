//! The agent's COPY binary framing (`copy_binary::strip_header`,
//! `is_trailer`, `check_tuple`), driven the way `agent/src/extract.rs`
//! (`Framing::row`) drives it over a source's CopyData messages: header on
//! the first message, then tuples, then the trailer and nothing after it.
//! The source database is not trusted to send well-formed tuples (a broken
//! or hostile server, a proxy): a batch must hold whole tuples only.
//!
//! Input: `fields i16 BE (sign bit cleared) | (len u16 LE | message)*`, the
//! last message taking what is left.
//!
//! Asserts: never panics; `strip_header` and `check_tuple` agree exactly
//! with a reference parser written here from PostgreSQL's documentation
//! (same accepted inputs, same remainder after the header); an accepted
//! tuple re-encodes (`encode_tuple`) to the very same bytes; a tuple with
//! the wrong field count is `FieldCount`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transmissor_proto::copy_binary::{
    CopyBinaryError, TRAILER, check_tuple, encode_tuple, is_trailer, strip_header,
};

fuzz_target!(|input: &[u8]| {
    let Some((head, mut rest)) = input.split_at_checked(2) else {
        return;
    };
    // The agent's field count is a column count: never negative.
    let fields = i16::from_be_bytes([head[0] & 0x7f, head[1]]);
    let mut messages = Vec::new();
    while !rest.is_empty() {
        let (len, body) = match rest.split_at_checked(2) {
            Some((l, body)) => (usize::from(u16::from_le_bytes([l[0], l[1]])), body),
            None => (rest.len(), rest),
        };
        let (msg, tail) = body.split_at(len.min(body.len()));
        messages.push(msg);
        rest = tail;
    }

    let mut started = false;
    let mut ended = false;
    for msg in messages {
        let mut msg = msg;
        if !started {
            let res = strip_header(msg);
            match (reference_header(msg), &res) {
                (Some(want), Ok(got)) => {
                    assert_eq!(got.as_ptr(), want.as_ptr(), "header remainder");
                    assert_eq!(got.len(), want.len(), "header remainder");
                }
                (None, Err(_)) => {}
                (want, got) => panic!("strip_header: reference {want:?}, got {got:?}"),
            }
            let Ok(after) = res else { return };
            msg = after;
            started = true;
            if msg.is_empty() {
                continue;
            }
        }
        if ended {
            return; // the agent refuses anything after the trailer
        }
        if is_trailer(msg) {
            assert_eq!(msg, TRAILER);
            ended = true;
            continue;
        }
        let res = check_tuple(msg, fields);
        let want = reference_tuple(msg, fields);
        match (&want, &res) {
            (Some(parsed), Ok(())) => {
                assert_eq!(parsed.len(), fields as usize);
                let mut again = Vec::new();
                encode_tuple(parsed, &mut again);
                assert_eq!(again, msg, "an accepted tuple re-encodes to itself");
            }
            (None, Err(e)) => {
                if msg.len() >= 2 && i16::from_be_bytes([msg[0], msg[1]]) != fields {
                    assert!(matches!(e, CopyBinaryError::FieldCount { .. }), "{e:?}");
                }
            }
            _ => panic!("check_tuple: reference {want:?}, got {res:?}"),
        }
        if res.is_err() {
            return; // the agent stops the extraction on the first bad tuple
        }
    }
});

/// The bytes after a valid header: the 11-byte signature, flags 0 (no OIDs,
/// no critical flags), a header-extension length and that many bytes.
fn reference_header(msg: &[u8]) -> Option<&[u8]> {
    if msg.len() < 19 || &msg[..11] != b"PGCOPY\n\xff\r\n\0" {
        return None;
    }
    if msg[11..15] != [0, 0, 0, 0] {
        return None;
    }
    let ext = u32::from_be_bytes(msg[15..19].try_into().unwrap()) as usize;
    if msg.len() - 19 < ext {
        return None;
    }
    Some(&msg[19 + ext..])
}

/// One tuple of exactly `fields` fields: `i16` count, then per field an
/// `i32` length (-1: NULL) and that many bytes; nothing after the last one.
fn reference_tuple(msg: &[u8], fields: i16) -> Option<Vec<Option<&[u8]>>> {
    let n = i16::from_be_bytes(msg.get(..2)?.try_into().unwrap());
    if n != fields || n < 0 {
        return None;
    }
    let mut rest = &msg[2..];
    let mut out = Vec::new();
    for _ in 0..n {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = i32::from_be_bytes(len.try_into().unwrap());
        rest = tail;
        if len == -1 {
            out.push(None);
            continue;
        }
        let len = usize::try_from(len).ok()?;
        let (value, tail) = rest.split_at_checked(len)?;
        out.push(Some(value));
        rest = tail;
    }
    rest.is_empty().then_some(out)
}
