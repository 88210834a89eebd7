//! The agent's spool reader, `JobDir::read_batch`: a batch file on disk may
//! be damaged (a power loss, a full disk, a bad sector, a person) and must
//! be refused, never sent or panicked on.
//!
//! Input: `flags u8 | seq u32 LE | body`.
//! - flags & 1: round trip: `write_batch(seq, rows = body.len(), body,
//!   level)` then `read_batch(seq)`, then the same file with one bit
//!   flipped (at a position taken from the flags and the body);
//! - otherwise `body` is the whole batch file, and with flags & 2 its two
//!   CRCs (header, frame) are first made right, so the fuzzer gets past
//!   them to what the reader does after them.
//!
//! Asserts: never panics; a file that exists is accepted or refused as
//! `Corrupt` (never `Io`); an accepted file has the `TXB2` magic, its
//! header is exactly the file's bytes 4..32 with a matching header CRC, its
//! sequence number is the file name's, its frame is the rest of the file
//! and matches the frame CRC; a written batch reads back exactly and its
//! frame decodes (under a cap of its size) to the bytes written; a single
//! flipped bit is refused.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use transmissor_agent::config::Mode;
use transmissor_agent::pipeline::spool::{JobDir, JobMeta, Spool, SpoolError};
use transmissor_proto::batch::decompress_checked;
use transmissor_proto::checksum::crc32c;

const HEADER_LEN: usize = 36;

/// One spool with one job under the process's temporary directory (the
/// xtask points `TMPDIR` at a directory it removes after the run).
fn job() -> &'static JobDir {
    static JOB: OnceLock<JobDir> = OnceLock::new();
    JOB.get_or_init(|| {
        let root = tempfile::Builder::new()
            .prefix("transmissor-fuzz-spool-")
            .tempdir()
            .unwrap()
            .keep();
        let spool = Spool::open(&root, u64::MAX / 2).unwrap();
        spool
            .create_job(&JobMeta {
                plan: 0,
                run_id: uuid::Uuid::now_v7(),
                job: "j".into(),
                mode: Mode::Snapshot,
                target: "t".into(),
                plan_version: "p".into(),
                columns: vec![],
                snapshot: String::new(),
                server_version: 150000,
                created_at: chrono::Utc::now(),
                copy_format: Default::default(),
                upsert: None,
            })
            .unwrap()
    })
}

fn batch_path(job: &JobDir, seq: u32) -> PathBuf {
    job.path().join(format!("{seq:010}.batch"))
}

fuzz_target!(|input: &[u8]| {
    let Some((head, body)) = input.split_at_checked(5) else {
        return;
    };
    let flags = head[0];
    let seq = u32::from_le_bytes(head[1..5].try_into().unwrap());
    let job = job();
    let path = batch_path(job, seq);
    if flags & 1 != 0 {
        round_trip(job, seq, body, flags);
    } else {
        let mut file = body.to_vec();
        if flags & 2 != 0 && file.len() >= HEADER_LEN {
            let frame_crc = crc32c(&file[HEADER_LEN..]);
            file[28..32].copy_from_slice(&frame_crc.to_le_bytes());
            let head_crc = crc32c(&file[..32]);
            file[32..36].copy_from_slice(&head_crc.to_le_bytes());
        }
        std::fs::write(&path, &file).unwrap();
        check_read(job, seq, &file);
    }
    std::fs::remove_file(&path).unwrap();
});

/// Reads `seq` back and checks the result against the file's bytes.
fn check_read(job: &JobDir, seq: u32, file: &[u8]) -> bool {
    match job.read_batch(seq) {
        Ok(b) => {
            assert!(file.len() >= HEADER_LEN);
            assert_eq!(&file[..4], b"TXB2");
            let u32_at = |o: usize| u32::from_le_bytes(file[o..o + 4].try_into().unwrap());
            let u64_at = |o: usize| u64::from_le_bytes(file[o..o + 8].try_into().unwrap());
            assert_eq!(crc32c(&file[..32]), u32_at(32));
            let h = b.header;
            assert_eq!(h.seq, seq);
            assert_eq!(h.seq, u32_at(4));
            assert_eq!(h.rows, u64_at(8));
            assert_eq!(h.raw_len, u64_at(16));
            assert_eq!(h.crc32c, u32_at(24));
            assert_eq!(h.frame_crc32c, u32_at(28));
            assert_eq!(b.frame, &file[HEADER_LEN..]);
            assert_eq!(crc32c(&b.frame), h.frame_crc32c);
            true
        }
        Err(SpoolError::Corrupt { .. }) => false,
        Err(e) => panic!("an existing file refused with {e}"),
    }
}

fn round_trip(job: &JobDir, seq: u32, raw: &[u8], flags: u8) {
    let level = 1 + i32::from(flags >> 1) % 5;
    let written = job.write_batch(seq, raw.len() as u64, raw, level).unwrap();
    let file = std::fs::read(batch_path(job, seq)).unwrap();
    assert!(check_read(job, seq, &file), "a written batch is refused");
    let b = job.read_batch(seq).unwrap();
    assert_eq!(b.header, written);
    let len = raw.len() as u64;
    assert_eq!(
        decompress_checked(&b.frame, len, written.crc32c, len).unwrap(),
        raw
    );

    // One flipped bit anywhere is caught.
    let pos = raw.iter().fold(usize::from(flags), |a, &b| {
        a.wrapping_mul(31).wrapping_add(usize::from(b))
    }) % (file.len() * 8);
    let mut bad = file.clone();
    bad[pos / 8] ^= 1 << (pos % 8);
    std::fs::write(batch_path(job, seq), &bad).unwrap();
    assert!(
        !check_read(job, seq, &bad),
        "bit {pos} flipped and the batch is still accepted"
    );
}
