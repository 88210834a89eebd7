//! Property tests of the batch frame decoder (`batch::decompress_checked`)
//! and of the COPY text framing the collector relies on.
//!
//! These stand in for `cargo fuzz` targets (which need a nightly toolchain):
//! each property runs a bounded number of random cases so the whole file
//! runs in a few seconds in CI. A failing case is shrunk and printed.
//!
//! Decoder properties:
//! - arbitrary bytes, declared sizes, CRCs and caps never panic, and an `Ok`
//!   is always exactly `raw_len` bytes, within the cap, with the declared CRC;
//! - a frame whose header declares more than the cap is refused with
//!   `TooLarge` (hand-made headers declaring any size, and real zstd frames
//!   of zeros compressed here), whatever `raw_len` the caller declares — the
//!   decoder's single output allocation is bounded by the cap, so this is the
//!   observable form of "never allocates more than `max_raw`";
//! - any input compressed with `batch::compress` at levels 1..=5 round-trips,
//!   also with a cap equal to its size (and is `TooLarge` one byte under);
//! - any single-byte corruption of a valid frame is refused, or decodes to
//!   the original bytes: never `Ok` with different bytes.
//!
//! COPY framing property (`copy_text_framing_*`): rows of arbitrary fields
//! are encoded as PostgreSQL COPY text, cut into batches at row boundaries,
//! compressed and decompressed. This checks the *on-the-wire invariant* the
//! collector relies on (each batch is whole rows ending in `\n`, one raw
//! newline per row, batches concatenate to the stream); it does not run the
//! agent's extraction loop (`agent/src/extract.rs`, which needs a live
//! database and is covered by the end-to-end fidelity test).

use proptest::prelude::*;
use transmissor_proto::batch::{BatchError, compress, decompress_checked};
use transmissor_proto::checksum::crc32c;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A zstd frame header (single segment, no checksum, no dictionary) whose
/// Frame_Content_Size field declares `size`, followed by `tail`.
fn frame_declaring(size: u64, tail: &[u8]) -> Vec<u8> {
    let mut v = ZSTD_MAGIC.to_vec();
    if let Ok(s) = u32::try_from(size) {
        v.push(0b1010_0000); // FCS field of 4 bytes, single segment
        v.extend_from_slice(&s.to_le_bytes());
    } else {
        v.push(0b1110_0000); // FCS field of 8 bytes, single segment
        v.extend_from_slice(&size.to_le_bytes());
    }
    v.extend_from_slice(tail);
    v
}

/// Bytes that often look like the start of a zstd frame, so the decoder gets
/// past the magic number and the header into block decoding.
fn frame_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        proptest::collection::vec(any::<u8>(), 0..256).prop_map(|tail| {
            let mut v = ZSTD_MAGIC.to_vec();
            v.extend(tail);
            v
        }),
        (0u64..4096, proptest::collection::vec(any::<u8>(), 0..256))
            .prop_map(|(n, tail)| frame_declaring(n, &tail)),
    ]
}

/// Raw batch contents: random bytes, or repetitive COPY-like text (which
/// zstd compresses with matches and Huffman tables, not raw blocks).
fn raw_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..8192),
        (
            proptest::collection::vec("[0-9a-z\\\\\t]{0,12}", 1..16),
            1usize..400
        )
            .prop_map(|(fields, reps)| {
                let row = format!("{}\n", fields.join("\t"));
                row.repeat(reps).into_bytes()
            }),
    ]
}

fn check_ok_invariants(
    res: &Result<Vec<u8>, BatchError>,
    raw_len: u64,
    crc: u32,
    max_raw: u64,
) -> Result<(), TestCaseError> {
    if let Ok(raw) = res {
        prop_assert_eq!(raw.len() as u64, raw_len);
        prop_assert!(raw.len() as u64 <= max_raw);
        prop_assert_eq!(crc32c(raw), crc);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary input never panics, and whatever is accepted honours the
    /// declared size, the cap and the CRC.
    #[test]
    fn decoder_never_panics_on_arbitrary_input(
        data in frame_like(),
        raw_len in prop_oneof![0u64..8192, any::<u64>()],
        crc in any::<u32>(),
        max_raw in prop_oneof![0u64..8192, 0u64..(1 << 20)],
    ) {
        let res = decompress_checked(&data, raw_len, crc, max_raw);
        check_ok_invariants(&res, raw_len, crc, max_raw)?;
        if raw_len > max_raw {
            prop_assert!(matches!(res, Err(BatchError::TooLarge { .. })), "{:?}", res);
        }
    }

    /// The declared size is checked against the frame header, with honest
    /// `raw_len`/CRC too: a header-valid frame with a bogus body never panics.
    #[test]
    fn decoder_never_panics_with_matching_declared_size(
        size in 0u64..4096,
        tail in proptest::collection::vec(any::<u8>(), 0..512),
        crc in any::<u32>(),
    ) {
        let data = frame_declaring(size, &tail);
        let res = decompress_checked(&data, size, crc, 4096);
        check_ok_invariants(&res, size, crc, 4096)?;
    }

    /// A header declaring more than the cap is refused before decoding,
    /// whatever the caller declares as `raw_len`.
    #[test]
    fn header_over_cap_is_too_large(
        max_raw in prop_oneof![0u64..4096, any::<u64>()],
        excess in prop_oneof![1u64..4096, any::<u64>()],
        claimed in prop_oneof![Just(None), any::<u64>().prop_map(Some)],
        crc in any::<u32>(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // u64::MAX and u64::MAX - 1 are zstd's "unknown" and "error"
        // sentinels: a header cannot declare them (see the unit test below).
        let declared = max_raw.saturating_add(excess).min(u64::MAX - 2);
        prop_assume!(declared > max_raw);
        let data = frame_declaring(declared, &tail);
        let raw_len = claimed.unwrap_or(declared);
        let res = decompress_checked(&data, raw_len, crc, max_raw);
        prop_assert!(
            matches!(res, Err(BatchError::TooLarge { limit, .. }) if limit == max_raw),
            "{:?}",
            res
        );
    }

    /// Everything `compress` produces at levels 1..=5 round-trips, also with
    /// a cap of exactly its size, and is refused one byte under that cap.
    #[test]
    fn round_trip(raw in raw_input(), level in 1i32..=5) {
        let z = compress(&raw, level).unwrap();
        let len = raw.len() as u64;
        let crc = crc32c(&raw);
        prop_assert_eq!(decompress_checked(&z, len, crc, 64 << 20).unwrap(), raw.clone());
        prop_assert_eq!(decompress_checked(&z, len, crc, len).unwrap(), raw.clone());
        if len > 0 {
            let res = decompress_checked(&z, len, crc, len - 1);
            prop_assert!(matches!(res, Err(BatchError::TooLarge { .. })), "{:?}", res);
            let res = decompress_checked(&z, len - 1, crc, 64 << 20);
            prop_assert!(matches!(res, Err(BatchError::SizeMismatch { .. })), "{:?}", res);
        }
        let res = decompress_checked(&z, len, !crc, len);
        prop_assert!(matches!(res, Err(BatchError::Checksum { .. })), "{:?}", res);
    }

    /// A single corrupted byte anywhere in a valid frame is refused, or (if
    /// zstd happens to decode the same content) yields the original bytes.
    #[test]
    fn single_byte_corruption_never_yields_other_bytes(
        raw in raw_input(),
        level in 1i32..=5,
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let z = compress(&raw, level).unwrap();
        let mut bad = z.clone();
        let i = pos.index(bad.len());
        bad[i] ^= xor;
        let res = decompress_checked(&bad, raw.len() as u64, crc32c(&raw), 64 << 20);
        if let Ok(back) = &res {
            prop_assert_eq!(back, &raw, "byte {} ^ {:#04x} decoded to other bytes", i, xor);
        }
    }
}

proptest! {
    // Each case compresses up to ~1 MiB of zeros: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Real zstd frames of zeros (tiny, huge ratio) larger than the cap are
    /// refused, whether the caller declares their true size or lies.
    #[test]
    fn zero_bomb_over_cap_is_too_large(
        cap in 0u64..(256 << 10),
        excess in 1u64..(768 << 10),
        lie in any::<u64>(),
        level in 1i32..=5,
    ) {
        let n = cap + excess;
        let raw = vec![0u8; n as usize];
        let z = compress(&raw, level).unwrap();
        let crc = crc32c(&raw);
        for declared in [n, lie % (cap + 1), lie] {
            let res = decompress_checked(&z, declared, crc, cap);
            prop_assert!(
                matches!(res, Err(BatchError::TooLarge { limit, .. }) if limit == cap),
                "declared {}: {:?}",
                declared,
                res
            );
        }
        // Under a cap that fits, the same frame decodes.
        prop_assert_eq!(decompress_checked(&z, n, crc, n).unwrap().len() as u64, n);
    }
}

#[test]
fn sentinel_sizes_are_not_content_sizes() {
    // zstd reserves these two values; a header "declaring" them has no size.
    for size in [u64::MAX, u64::MAX - 1] {
        let data = frame_declaring(size, b"");
        assert_eq!(
            decompress_checked(&data, 10, 0, u64::MAX - 2),
            Err(BatchError::NoContentSize)
        );
        assert!(matches!(
            decompress_checked(&data, size, 0, 100),
            Err(BatchError::TooLarge { .. })
        ));
    }
}

#[test]
fn empty_batch_round_trips() {
    let z = compress(b"", 3).unwrap();
    assert_eq!(decompress_checked(&z, 0, crc32c(b""), 0).unwrap(), b"");
}

// ---------------------------------------------------------------------------
// COPY text framing.
// ---------------------------------------------------------------------------

/// One field: `None` is SQL NULL.
type Field = Option<Vec<u8>>;

/// Appends one field as PostgreSQL's `COPY ... TO` text format writes it
/// (`CopyAttributeOutText`): backslash, the delimiter (tab), newline,
/// carriage return, backspace, form feed and vertical tab are escaped; NULL
/// is `\N`. Other bytes, non-ASCII included, are written as they are.
fn encode_field(f: &Field, out: &mut Vec<u8>) {
    let Some(bytes) = f else {
        out.extend_from_slice(b"\\N");
        return;
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

fn encode_row(row: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        encode_field(f, &mut out);
    }
    out.push(b'\n');
    out
}

/// Parses COPY text as `COPY ... FROM` would (for the escapes written above).
fn decode_rows(text: &[u8]) -> Result<Vec<Vec<Field>>, String> {
    let body = text
        .strip_suffix(b"\n")
        .ok_or("batch does not end with a newline")?;
    let mut rows = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let mut row = Vec::new();
        for f in line.split(|&b| b == b'\t') {
            if f == b"\\N" {
                row.push(None);
                continue;
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
                    other => return Err(format!("bad escape {other:?} in {f:?}")),
                });
            }
            row.push(Some(v));
        }
        rows.push(row);
    }
    Ok(rows)
}

fn field() -> impl Strategy<Value = Field> {
    let special = prop_oneof![
        Just(b'\\'),
        Just(b'\t'),
        Just(b'\n'),
        Just(b'\r'),
        Just(b'N'),
        Just(0x08u8),
        Just(0x0bu8),
        Just(0x0cu8),
        any::<u8>(),
    ];
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(b"\\N".to_vec())), // the text "\N", not NULL
        1 => Just(Some(Vec::new())),      // empty string, not NULL
        4 => proptest::collection::vec(special, 0..24).prop_map(Some),
        3 => any::<String>().prop_map(|s| Some(s.into_bytes())),
    ]
}

/// A result set: every row has the same number of columns.
fn rows() -> impl Strategy<Value = Vec<Vec<Field>>> {
    (1usize..6).prop_flat_map(|ncols| {
        proptest::collection::vec(proptest::collection::vec(field(), ncols), 1..80)
    })
}

/// Compresses each batch, decompresses it under a cap of exactly its size,
/// and checks the framing invariants against the rows it was cut from.
fn check_batches(rows: &[Vec<Field>], cuts: &[usize], level: i32) -> Result<(), TestCaseError> {
    let stream: Vec<u8> = rows.iter().flat_map(|r| encode_row(r)).collect();
    let mut received = Vec::new();
    let mut start = 0;
    for &end in cuts {
        let batch: Vec<u8> = rows[start..end]
            .iter()
            .flat_map(|r| encode_row(r))
            .collect();
        let z = compress(&batch, level).unwrap();
        let back =
            decompress_checked(&z, batch.len() as u64, crc32c(&batch), batch.len() as u64).unwrap();
        prop_assert_eq!(&back, &batch);
        // (a) every batch ends with a newline
        prop_assert_eq!(back.last(), Some(&b'\n'));
        // (b) raw (unescaped) newlines are exactly the row terminators
        let newlines = back.iter().filter(|&&b| b == b'\n').count();
        prop_assert_eq!(newlines, end - start);
        // ... and the batch parses back into exactly its rows
        let decoded = decode_rows(&back).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&decoded[..], &rows[start..end]);
        received.extend_from_slice(&back);
        start = end;
    }
    prop_assert_eq!(start, rows.len());
    // (c) the batches concatenate to the original stream
    prop_assert_eq!(received, stream);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Batches cut at arbitrary row boundaries.
    #[test]
    fn copy_text_framing_arbitrary_cuts(
        (rows, cut_after) in rows().prop_flat_map(|rows| {
            let n = rows.len();
            (Just(rows), proptest::collection::vec(any::<bool>(), n))
        }),
        level in 1i32..=5,
    ) {
        let mut cuts: Vec<usize> = (1..rows.len()).filter(|&i| cut_after[i - 1]).collect();
        cuts.push(rows.len());
        check_batches(&rows, &cuts, level)?;
    }

    /// Batches cut the way the agent cuts them (`extract.rs`): append whole
    /// rows, cut once the buffer reaches the batch size, flush the rest.
    #[test]
    fn copy_text_framing_size_threshold_cuts(
        rows in rows(),
        batch_size in 1usize..512,
        level in 1i32..=5,
    ) {
        let mut cuts = Vec::new();
        let mut buffered = 0;
        for (i, r) in rows.iter().enumerate() {
            buffered += encode_row(r).len();
            if buffered >= batch_size {
                cuts.push(i + 1);
                buffered = 0;
            }
        }
        if buffered > 0 {
            cuts.push(rows.len());
        }
        check_batches(&rows, &cuts, level)?;
    }
}

// COPY binary tuple checker (`copy_binary::check_tuple`), the agent's guard
// on every binary row: arbitrary bytes never panic; any encoded tuple is
// accepted with its own field count and refused with another; any strict
// prefix of a tuple is refused.
mod copy_binary_props {
    use proptest::prelude::*;
    use transmissor_proto::copy_binary::{check_tuple, encode_tuple, strip_header};

    fn fields() -> impl Strategy<Value = Vec<Option<Vec<u8>>>> {
        prop::collection::vec(
            prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            0..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), n in -2i16..20) {
            let _ = check_tuple(&bytes, n);
            let _ = strip_header(&bytes);
        }

        #[test]
        fn encoded_tuples_check(f in fields()) {
            let refs: Vec<Option<&[u8]>> = f.iter().map(|x| x.as_deref()).collect();
            let mut t = Vec::new();
            encode_tuple(&refs, &mut t);
            let n = f.len() as i16;
            prop_assert!(check_tuple(&t, n).is_ok());
            prop_assert!(check_tuple(&t, n + 1).is_err());
            for cut in 0..t.len() {
                prop_assert!(check_tuple(&t[..cut], n).is_err(), "prefix of {} bytes accepted", cut);
            }
        }
    }
}
