//! The collector's batch frame decoder, `batch::decompress_checked`: the
//! body of every `PutBatch` (a zstd frame, its declared `raw_len` and CRC)
//! comes from the network.
//!
//! Input: `flags u8 | small cap u16 LE | raw_len u64 LE | crc u32 LE | data`.
//! - flags & 3 picks the cap: the u16 above, 1 MiB, or the collector's
//!   default (`DEFAULT_MAX_BATCH_RAW_BYTES`, 64 MiB);
//! - flags & 4: `raw_len` is the size the frame header declares (an honest
//!   caller), so decoding goes past the size checks;
//! - flags & 8: round trip: `data` is raw COPY bytes, compressed at level
//!   1 + (flags >> 4) % 5 as the agent does.
//!
//! Asserts: never panics; an `Ok` is exactly `raw_len` bytes, within the cap,
//! with the declared CRC; a `raw_len` or a header size above the cap is
//! `TooLarge` (so the one output allocation is bounded by the cap, which
//! libFuzzer's `-malloc_limit_mb`/`-rss_limit_mb` enforce too); a frame
//! refused only for its CRC decodes under the CRC it computed; a round trip
//! gives the bytes back, also under a cap of exactly their size, and is
//! `TooLarge` one byte under.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transmissor_proto::batch::{BatchError, compress, decompress_checked};
use transmissor_proto::checksum::crc32c;
use transmissor_proto::limits::DEFAULT_MAX_BATCH_RAW_BYTES;

const HEAD: usize = 15;

fuzz_target!(|input: &[u8]| {
    let Some((head, data)) = input.split_at_checked(HEAD) else {
        return;
    };
    let flags = head[0];
    let small = u64::from(u16::from_le_bytes([head[1], head[2]]));
    let mut raw_len = u64::from_le_bytes(head[3..11].try_into().unwrap());
    let crc = u32::from_le_bytes(head[11..15].try_into().unwrap());
    let cap = match flags & 3 {
        0 | 3 => small,
        1 => 1 << 20,
        _ => DEFAULT_MAX_BATCH_RAW_BYTES,
    };

    if flags & 8 != 0 {
        round_trip(data, 1 + i32::from(flags >> 4) % 5, cap);
        return;
    }

    let header_size = zstd::zstd_safe::get_frame_content_size(data).ok().flatten();
    if flags & 4 != 0
        && let Some(n) = header_size
    {
        raw_len = n;
    }
    let res = decompress_checked(data, raw_len, crc, cap);
    check(&res, raw_len, crc, cap);
    if raw_len > cap || header_size.is_some_and(|n| n > cap) {
        assert!(
            matches!(res, Err(BatchError::TooLarge { limit, .. }) if limit == cap),
            "over the cap but {res:?}"
        );
    }
    if let Err(BatchError::Checksum { computed, declared }) = res {
        assert_eq!(declared, crc);
        let again = decompress_checked(data, raw_len, computed, cap);
        check(&again, raw_len, computed, cap);
        assert!(again.is_ok(), "decoded once, then {again:?}");
    }
});

fn check(res: &Result<Vec<u8>, BatchError>, raw_len: u64, crc: u32, cap: u64) {
    if let Ok(raw) = res {
        assert_eq!(raw.len() as u64, raw_len);
        assert!(raw.len() as u64 <= cap);
        assert_eq!(crc32c(raw), crc);
    }
}

fn round_trip(raw: &[u8], level: i32, cap: u64) {
    let z = compress(raw, level).unwrap();
    let (len, crc) = (raw.len() as u64, crc32c(raw));
    assert_eq!(decompress_checked(&z, len, crc, len).unwrap(), raw);
    let res = decompress_checked(&z, len, crc, cap);
    if len <= cap {
        assert_eq!(res.unwrap(), raw);
    } else {
        assert!(matches!(res, Err(BatchError::TooLarge { .. })), "{res:?}");
    }
    if len > 0 {
        let res = decompress_checked(&z, len, crc, len - 1);
        assert!(matches!(res, Err(BatchError::TooLarge { .. })), "{res:?}");
        let res = decompress_checked(&z, len - 1, crc, len);
        assert!(
            matches!(res, Err(BatchError::SizeMismatch { .. })),
            "{res:?}"
        );
    }
    let res = decompress_checked(&z, len, !crc, len);
    assert!(matches!(res, Err(BatchError::Checksum { .. })), "{res:?}");
}
