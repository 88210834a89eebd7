use bytes::BytesMut;
use hmac::{KeyInit, Mac};
use proptest::prelude::*;

use super::*;
use crate::pseudonym_key::PseudonymKey;

fn key() -> PseudonymKey {
    PseudonymKey::generate().unwrap()
}

/// The reference: HMAC-SHA256 of `value` under `key`, lowercase hex.
fn expected(key: &PseudonymKey, value: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key.bytes()).unwrap();
    mac.update(value);
    hex::encode(mac.finalize().into_bytes())
}

/// A value as PostgreSQL's COPY TO writes it in text format.
fn pg_escape(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x0b => out.extend_from_slice(b"\\v"),
            _ => out.push(b),
        }
    }
    out
}

fn text_row(fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut row = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            row.push(b'\t');
        }
        match f {
            None => row.extend_from_slice(b"\\N"),
            Some(v) => row.extend_from_slice(&pg_escape(v)),
        }
    }
    row.push(b'\n');
    row
}

#[test]
fn text_rows_get_the_hmac_of_the_unescaped_value() {
    let key = key();
    let mut p = Pseudonymiser::new(&key, CopyFormat::Text, vec![false, true, true, false]);
    let cpf = "123.456.789-09\tcom tab\\barra\nlinha ção 名前".as_bytes();
    let row = text_row(&[Some(b"1"), Some(cpf), None, Some(b"a\tb")]);
    let mut out = BytesMut::new();
    p.append_row(&row, &mut out).unwrap();
    let want = format!("1\t{}\t\\N\ta\\tb\n", expected(&key, cpf));
    assert_eq!(std::str::from_utf8(&out).unwrap(), want);
    assert_eq!(p.pseudonym(cpf), expected(&key, cpf));
    // Rows append: a second row follows the first.
    p.append_row(&row, &mut out).unwrap();
    assert_eq!(out.len(), 2 * want.len());
}

#[test]
fn binary_tuples_carry_the_same_pseudonyms() {
    let key = key();
    let cpf = "123\t\\ção".as_bytes();
    let mut tuple = Vec::new();
    copy_binary::encode_tuple(&[Some(b"\0\0\0\x01"), Some(cpf), None], &mut tuple);
    let mut p = Pseudonymiser::new(&key, CopyFormat::Binary, vec![false, true, true]);
    let mut out = BytesMut::new();
    p.append_row(&tuple, &mut out).unwrap();
    let hmac = expected(&key, cpf);
    let mut want = Vec::new();
    copy_binary::encode_tuple(
        &[Some(b"\0\0\0\x01"), Some(hmac.as_bytes()), None],
        &mut want,
    );
    assert_eq!(&out[..], &want[..]);
    copy_binary::check_tuple(&out, 3).unwrap();
}

#[test]
fn malformed_rows_are_refused() {
    let key = key();
    let mut p = Pseudonymiser::new(&key, CopyFormat::Text, vec![true, false]);
    let mut out = BytesMut::new();
    assert_eq!(
        p.append_row(b"a\tb\tc\n", &mut out),
        Err(PseudonymError::FieldCount {
            found: 3,
            expected: 2
        })
    );
    assert_eq!(
        p.append_row(b"a\tb", &mut out),
        Err(PseudonymError::Unterminated)
    );
    let mut p = Pseudonymiser::new(&key, CopyFormat::Binary, vec![true, false]);
    let mut tuple = Vec::new();
    copy_binary::encode_tuple(&[Some(b"x")], &mut tuple);
    assert!(p.append_row(&tuple, &mut out).is_err());
}

#[test]
fn every_escape_copy_reads() {
    let mut out = Vec::new();
    for (field, value) in [
        (&b"a\\\\b"[..], &b"a\\b"[..]),
        (b"\\b\\f\\n\\r\\t\\v", b"\x08\x0c\n\r\t\x0b"),
        (b"\\101\\0\\12x", b"A\0\nx"),
        (b"\\x41\\x4z\\xg", b"A\x04zxg"),
        (b"\\N", b"N"),
        (b"\\.", b"."),
        (b"fim\\", b"fim\\"),
        (b"", b""),
    ] {
        unescape_into(field, &mut out);
        assert_eq!(out, value, "{}", String::from_utf8_lossy(field));
    }
}

/// One byte written as COPY FROM would read it: raw when allowed, or one
/// of the escapes PostgreSQL writes, or octal, or hex.
fn escaped(b: u8, how: u8) -> Vec<u8> {
    let special = matches!(b, b'\\' | b'\t' | b'\n' | b'\r');
    match how % 3 {
        0 if !special => vec![b],
        0 | 1 => format!("\\{b:03o}").into_bytes(),
        _ => format!("\\x{b:02x}").into_bytes(),
    }
}

proptest! {
    #[test]
    fn escaped_text_round_trips(value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        unescape_into(&pg_escape(&value), &mut out);
        prop_assert_eq!(&out, &value);
    }

    #[test]
    fn any_escape_mix_round_trips(bytes in proptest::collection::vec((any::<u8>(), any::<u8>()), 0..64)) {
        let field: Vec<u8> = bytes.iter().flat_map(|&(b, how)| escaped(b, how)).collect();
        let value: Vec<u8> = bytes.iter().map(|&(b, _)| b).collect();
        let mut out = Vec::new();
        unescape_into(&field, &mut out);
        prop_assert_eq!(out, value);
    }

    #[test]
    fn text_and_binary_agree(values in proptest::collection::vec(proptest::option::of(".{0,20}"), 1..6)) {
        let key = PseudonymKey::generate().unwrap();
        let flags: Vec<bool> = (0..values.len()).map(|i| i % 2 == 0).collect();
        let fields: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref().map(str::as_bytes)).collect();
        let mut text = Pseudonymiser::new(&key, CopyFormat::Text, flags.clone());
        let mut binary = Pseudonymiser::new(&key, CopyFormat::Binary, flags.clone());
        let mut t = BytesMut::new();
        text.append_row(&text_row(&fields), &mut t).unwrap();
        let mut tuple = Vec::new();
        copy_binary::encode_tuple(&fields, &mut tuple);
        let mut b = BytesMut::new();
        binary.append_row(&tuple, &mut b).unwrap();
        // Each format's fields, decoded, are the same values.
        let from_text: Vec<Option<Vec<u8>>> = t[..t.len() - 1]
            .split(|&c| c == b'\t')
            .map(|f| (f != b"\\N").then(|| { let mut o = Vec::new(); unescape_into(f, &mut o); o }))
            .collect();
        let from_binary: Vec<Option<Vec<u8>>> = copy_binary::fields(&b).map(|f| f.map(<[u8]>::to_vec)).collect();
        prop_assert_eq!(&from_text, &from_binary);
        for (i, v) in values.iter().enumerate() {
            let want = match (flags[i], v) {
                (true, Some(v)) => Some(expected(&key, v.as_bytes()).into_bytes()),
                (_, v) => v.as_ref().map(|v| v.as_bytes().to_vec()),
            };
            prop_assert_eq!(&from_text[i], &want);
        }
    }
}
