//! Property tests of the spool's batch file reader (`JobDir::read_batch`).
//!
//! A batch file is a 36-byte header (`"TXB2" | seq u32 | rows u64 |
//! raw_len u64 | crc32c(raw) u32 | crc32c(frame) u32 | crc32c(header) u32`,
//! little-endian) followed by one zstd frame; see `agent/src/spool.rs`.
//!
//! - A batch written by `write_batch` reads back exactly (header and frame),
//!   and its frame decompresses to the raw bytes written.
//! - The file replaced by arbitrary bytes (fully random, or behind a valid
//!   magic/sequence number, or behind the original header), truncated to
//!   any shorter length, or extended by any bytes is refused with `Corrupt`.
//! - A missing file is an `Io` error; a batch file under another sequence
//!   number's name is `Corrupt`.
//! - A single bit flipped anywhere, header included, is refused
//!   (`single_bit_flip_anywhere_is_refused`).
//!
//! Every case writes (and fsyncs) one batch, so the case counts are smaller
//! than in the pure properties; the whole file runs in a few seconds.

use std::fs;
use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use transmissor_agent::config::Mode;
use transmissor_agent::pipeline::spool::{BatchHeader, JobDir, JobMeta, Spool, SpoolError};
use transmissor_proto::batch::decompress_checked;

const HEADER_LEN: usize = 36;

/// A spool with one job directory, shared by all the cases of one property.
struct Fixture {
    _tmp: tempfile::TempDir,
    job: JobDir,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path(), u64::MAX / 2).unwrap();
    let job = spool
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
        .unwrap();
    Fixture { _tmp: tmp, job }
}

fn batch_path(job: &JobDir, seq: u32) -> PathBuf {
    job.path().join(format!("{seq:010}.batch"))
}

/// One written batch: what was written and the file's bytes.
struct Written {
    seq: u32,
    raw: Vec<u8>,
    header: BatchHeader,
    file: Vec<u8>,
}

fn write(job: &JobDir, (seq, rows, raw, level): (u32, u64, Vec<u8>, i32)) -> Written {
    let header = job.write_batch(seq, rows, &raw, level).unwrap();
    let file = fs::read(batch_path(job, seq)).unwrap();
    Written {
        seq,
        raw,
        header,
        file,
    }
}

fn batch_input() -> impl Strategy<Value = (u32, u64, Vec<u8>, i32)> {
    (
        any::<u32>(),
        any::<u64>(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            ("[0-9a-z\\\\\t]{1,40}", 1usize..200)
                .prop_map(|(row, n)| format!("{row}\n").repeat(n).into_bytes()),
        ],
        1i32..=5,
    )
}

fn run<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(&JobDir, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let fx = fixture();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, |v| test(&fx.job, v)) {
        panic!("{e}");
    }
}

/// Replaces the batch file's bytes and reads it back.
fn read_replaced(job: &JobDir, seq: u32, bytes: &[u8]) -> Result<(), SpoolError> {
    fs::write(batch_path(job, seq), bytes).unwrap();
    job.read_batch(seq).map(|_| ())
}

fn assert_corrupt(res: Result<(), SpoolError>, what: &str) -> Result<(), TestCaseError> {
    match res {
        Err(SpoolError::Corrupt { .. }) => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "{what}: expected Corrupt, got {other:?}"
        ))),
    }
}

#[test]
fn untouched_batches_read_back_exactly() {
    run(128, batch_input(), |job, input| {
        let w = write(job, input);
        let back = job.read_batch(w.seq).unwrap();
        prop_assert_eq!(back.header, w.header);
        prop_assert_eq!(back.header.raw_len, w.raw.len() as u64);
        prop_assert_eq!(&back.frame[..], &w.file[HEADER_LEN..]);
        let raw = decompress_checked(
            &back.frame,
            back.header.raw_len,
            back.header.crc32c,
            back.header.raw_len,
        )
        .unwrap();
        prop_assert_eq!(raw, w.raw);
        Ok(())
    });
}

#[test]
fn arbitrary_contents_are_refused() {
    let junk = prop_oneof![
        // anything at all
        (0u8..1, proptest::collection::vec(any::<u8>(), 0..512)),
        // valid magic and sequence number, anything after
        (1u8..2, proptest::collection::vec(any::<u8>(), 0..512)),
        // the original header, any frame
        (2u8..3, proptest::collection::vec(any::<u8>(), 0..512)),
    ];
    run(128, (batch_input(), junk), |job, (input, (kind, tail))| {
        let w = write(job, input);
        let mut bytes = match kind {
            0 => Vec::new(),
            1 => [&b"TXB1"[..], &w.seq.to_le_bytes()].concat(),
            _ => w.file[..HEADER_LEN].to_vec(),
        };
        bytes.extend_from_slice(&tail);
        prop_assume!(bytes != w.file);
        assert_corrupt(read_replaced(job, w.seq, &bytes), "arbitrary bytes")
    });
}

#[test]
fn truncations_are_refused() {
    run(
        128,
        (batch_input(), any::<prop::sample::Index>()),
        |job, (input, cut)| {
            let w = write(job, input);
            let len = cut.index(w.file.len());
            assert_corrupt(
                read_replaced(job, w.seq, &w.file[..len]),
                &format!("truncated to {len} of {} bytes", w.file.len()),
            )
        },
    );
}

#[test]
fn appended_bytes_are_refused() {
    run(
        128,
        (batch_input(), proptest::collection::vec(any::<u8>(), 1..64)),
        |job, (input, extra)| {
            let w = write(job, input);
            let bytes = [&w.file[..], &extra].concat();
            assert_corrupt(read_replaced(job, w.seq, &bytes), "bytes appended")
        },
    );
}

/// The module doc promises that a corrupted spool file is caught before it
/// is sent: a flip anywhere, header included (it carries its own CRC since
/// this property found flips in `rows`/`raw_len` going through), is refused.
#[test]
fn single_bit_flip_anywhere_is_refused() {
    run(
        256,
        (batch_input(), any::<prop::sample::Index>()),
        |job, (input, bit)| {
            let w = write(job, input);
            let bit = bit.index(w.file.len() * 8);
            let mut bytes = w.file.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            assert_corrupt(
                read_replaced(job, w.seq, &bytes),
                &format!("bit {bit} (byte {}) flipped", bit / 8),
            )
        },
    );
}

#[test]
fn missing_or_misnamed_files() {
    let fx = fixture();
    let w = write(&fx.job, (7, 2, b"1\ta\n2\tb\n".to_vec(), 3));
    assert!(matches!(fx.job.read_batch(8), Err(SpoolError::Io { .. })));
    fs::copy(batch_path(&fx.job, 7), batch_path(&fx.job, 8)).unwrap();
    assert!(matches!(
        fx.job.read_batch(8),
        Err(SpoolError::Corrupt { .. })
    ));
    assert_eq!(fx.job.read_batch(7).unwrap().header, w.header);
}
