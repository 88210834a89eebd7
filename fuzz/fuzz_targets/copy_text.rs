//! COPY text framing end to end, without a database: rows of arbitrary
//! field values are written as PostgreSQL's `COPY ... TO` text format
//! writes them (one CopyData message per row), cut into batches the way
//! `agent/src/extract.rs` cuts them (a batch closes once it holds
//! `batch_raw_bytes` or more), compressed with one reused
//! `BatchCompressor` (as the agent's writer thread does) and decoded with
//! the collector's `decompress_checked` under a cap of exactly the batch's
//! size.
//!
//! Input: `level u8 | batch size u8 | body`; the body's rows are separated
//! by 0xFE, a row's fields by 0xFF, and the field `[0xFD]` is NULL.
//!
//! Asserts: every batch decodes to exactly the bytes cut, ends with a
//! newline and holds one raw newline per row (the invariant the collector
//! relies on when it hands a batch to `COPY FROM`); each batch parses back
//! into exactly its rows; the batches' row counts add up and their bytes
//! concatenate to the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transmissor_proto::batch::{BatchCompressor, decompress_checked};
use transmissor_proto::checksum::crc32c;

type Field = Option<Vec<u8>>;

fuzz_target!(|input: &[u8]| {
    let Some((head, body)) = input.split_at_checked(2) else {
        return;
    };
    let level = 1 + i32::from(head[0]) % 5;
    let batch_size = 1 + usize::from(head[1]) * 4;
    let rows: Vec<Vec<Field>> = body
        .split(|&b| b == 0xfe)
        .map(|row| {
            row.split(|&b| b == 0xff)
                .map(|f| (f != [0xfd]).then(|| f.to_vec()))
                .collect()
        })
        .collect();

    // The agent's read loop (`copy_job`): one message is one row.
    let mut batches: Vec<(Vec<u8>, usize)> = Vec::new();
    let (mut buf, mut in_buf) = (Vec::new(), 0usize);
    let mut stream = Vec::new();
    for row in &rows {
        let msg = encode_row(row);
        stream.extend_from_slice(&msg);
        buf.extend_from_slice(&msg);
        in_buf += 1;
        if buf.len() >= batch_size {
            batches.push((std::mem::take(&mut buf), in_buf));
            in_buf = 0;
        }
    }
    if !buf.is_empty() {
        batches.push((buf, in_buf));
    }

    let mut compressor = BatchCompressor::new(level).unwrap();
    let (mut received, mut at) = (Vec::new(), 0usize);
    for (raw, n) in &batches {
        let frame = compressor.compress_in_place(raw).unwrap().to_vec();
        let len = raw.len() as u64;
        let back = decompress_checked(&frame, len, crc32c(raw), len).unwrap();
        assert_eq!(&back, raw);
        assert_eq!(back.last(), Some(&b'\n'));
        assert_eq!(back.iter().filter(|&&b| b == b'\n').count(), *n);
        assert_eq!(decode_rows(&back), rows[at..at + n]);
        received.extend_from_slice(&back);
        at += n;
    }
    assert_eq!(at, rows.len());
    assert_eq!(received, stream);
});

/// PostgreSQL's `CopyAttributeOutText` for the default delimiter (tab):
/// backslash, tab, newline, carriage return, backspace, form feed and
/// vertical tab are escaped; NULL is `\N`.
fn encode_row(row: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        let Some(bytes) = f else {
            out.extend_from_slice(b"\\N");
            continue;
        };
        for &b in bytes {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                0x0b => out.extend_from_slice(b"\\v"),
                _ => out.push(b),
            }
        }
    }
    out.push(b'\n');
    out
}

/// `COPY ... FROM` text parsing of what `encode_row` writes.
fn decode_rows(text: &[u8]) -> Vec<Vec<Field>> {
    let body = text.strip_suffix(b"\n").expect("ends with a newline");
    body.split(|&b| b == b'\n')
        .map(|line| {
            line.split(|&b| b == b'\t')
                .map(|f| {
                    if f == b"\\N" {
                        return None;
                    }
                    let mut v = Vec::with_capacity(f.len());
                    let mut it = f.iter();
                    while let Some(&b) = it.next() {
                        if b != b'\\' {
                            v.push(b);
                            continue;
                        }
                        v.push(match it.next() {
                            Some(b'\\') => b'\\',
                            Some(b't') => b'\t',
                            Some(b'n') => b'\n',
                            Some(b'r') => b'\r',
                            Some(b'b') => 0x08,
                            Some(b'f') => 0x0c,
                            Some(b'v') => 0x0b,
                            other => panic!("bad escape {other:?}"),
                        });
                    }
                    Some(v)
                })
                .collect()
        })
        .collect()
}
