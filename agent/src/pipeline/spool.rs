//! The on-disk spool: extracted batches wait here until the collector has
//! committed their transmission.
//!
//! # Layout
//! ```text
//! <spool>/<run id>/<job>/job.json          what the job is (written first): its
//!                                          columns as sent, pseudonymised ones flagged
//!                                          (their values in the batches are pseudonyms)
//! <spool>/<run id>/<job>/0000000001.batch  batch 1, 2, ... (see below)
//! <spool>/<run id>/<job>/done.json         extraction complete: batches, rows, digest
//! <spool>/<run id>/<job>/failed.json       extraction failed: the reason
//! ```
//! A batch file is a 36-byte little-endian header followed by one zstd
//! frame: `"TXB2" | seq u32 | rows u64 | raw_len u64 | crc32c(raw) u32 |
//! crc32c(frame) u32 | crc32c(the 32 header bytes before it) u32`.
//!
//! # Invariants
//! - Every file is written to a `.tmp` name, then renamed; so a file under
//!   its final name is complete (unless the machine lost power before it
//!   reached the disk, which its CRCs catch). Metadata files are fsynced
//!   before the rename. Batch files are fsynced by a [`BatchSyncer`] thread
//!   while the next batches are compressed, off the extraction's path.
//!   Stray `.tmp` files are leftovers of a crash and are ignored and removed.
//! - `done.json` is written only after batches `1..=n` are all durable and
//!   the directory itself was fsynced; it is the only proof that the
//!   extraction finished (so a power loss can only damage the batches of an
//!   interrupted extraction, which is aborted and extracted again anyway). A job directory with neither `done.json` nor
//!   `failed.json` is an interrupted extraction: recovery aborts its
//!   transmission and deletes it (the next run extracts again).
//! - A job directory is deleted only after the collector committed (or
//!   definitively refused) its transmission.
//! - The spool's total size never exceeds its limit: a batch that would pass
//!   it is refused with [`SpoolError::Full`] and the extraction stops.
//! - The spool directory is 0700 and every directory and file in it 0700 /
//!   0600 whatever the umask ([`private_fs`]); a spool directory found open
//!   to other users is tightened, with a warning.
//! - Reading a batch verifies the frame's CRC, so a corrupted file is caught
//!   before it is sent.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use transmissor_proto::batch::BatchCompressor;
use uuid::Uuid;

use crate::config::Mode;
use crate::private_fs;

const MAGIC: &[u8; 4] = b"TXB2";
const HEADER_LEN: usize = 36;

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "spool full: {used} of {limit} bytes used and a batch of {needed} bytes does not fit; extraction stopped. Free space by letting pending uploads finish, or raise spool.max_bytes"
    )]
    Full { used: u64, limit: u64, needed: u64 },
    #[error("spool file {path} is corrupted: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One column as described by the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMeta {
    pub name: String,
    pub source_type: String,
    pub target_type: String,
    /// The values are pseudonyms (`target_type` is then `text`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pseudonymised: bool,
}

/// `job.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobMeta {
    /// The signed plan the job came from (0: a local job; and in spools of
    /// agents older than plans).
    #[serde(default)]
    pub plan: u64,
    pub run_id: Uuid,
    pub job: String,
    pub mode: Mode,
    pub target: String,
    pub plan_version: String,
    pub columns: Vec<ColumnMeta>,
    pub snapshot: String,
    pub server_version: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// How the batches' rows are encoded (text in spools of older agents).
    #[serde(default)]
    pub copy_format: CopyFormat,
    /// Mode `upsert`: key, watermark column and what the snapshot proves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upsert: Option<UpsertMeta>,
}

/// An upsert job's part of `job.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertMeta {
    pub key: Vec<String>,
    pub watermark: String,
    /// The source's time of the run's snapshot.
    pub snapshot_at: chrono::DateTime<chrono::Utc>,
    /// The watermark the snapshot proves (see `incremental`).
    pub proves: Option<chrono::DateTime<chrono::Utc>>,
}

/// The COPY format of a job's batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyFormat {
    /// Whole rows of COPY text, each ending in a newline.
    #[default]
    Text,
    /// Whole COPY binary tuples, without the stream's header and trailer.
    Binary,
}

/// `done.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneMeta {
    pub batches: u32,
    pub rows: u64,
    pub raw_bytes: u64,
    pub digest: String,
    /// Mode `upsert`: the job's whole result (no watermark bound).
    #[serde(default)]
    pub full: bool,
    /// Mode `upsert`, not full: the watermark bound it read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// `failed.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedMeta {
    pub reason: String,
}

/// Where a job's extraction stands, as recorded on disk.
#[derive(Debug, Clone)]
pub enum JobState {
    Interrupted,
    Done(DoneMeta),
    Failed(String),
}

/// A batch header as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub seq: u32,
    pub rows: u64,
    pub raw_len: u64,
    pub crc32c: u32,
    pub frame_crc32c: u32,
}

/// A batch read back from the spool.
pub struct SpooledBatch {
    pub header: BatchHeader,
    pub frame: Vec<u8>,
}

#[derive(Clone)]
pub struct Spool {
    root: PathBuf,
    limit: u64,
    used: Arc<AtomicU64>,
}

impl Spool {
    /// Opens (creating, or tightening to 0700) the spool and measures what
    /// it holds.
    pub fn open(root: &Path, limit: u64) -> Result<Self, SpoolError> {
        private_fs::ensure_private_dir(root).map_err(io_err(root))?;
        let used = dir_size(root).map_err(io_err(root))?;
        Ok(Self {
            root: root.to_path_buf(),
            limit,
            used: Arc::new(AtomicU64::new(used)),
        })
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// What the spool at `root` holds, without opening it (0 when it cannot
    /// be read).
    pub fn usage(root: &Path) -> u64 {
        dir_size(root).unwrap_or(0)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Creates a job directory and its `job.json`.
    pub fn create_job(&self, meta: &JobMeta) -> Result<JobDir, SpoolError> {
        let dir = self.root.join(meta.run_id.to_string()).join(&meta.job);
        private_fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let jd = JobDir {
            dir,
            spool: self.clone(),
        };
        jd.write_json("job.json", meta)?;
        sync_dir(&jd.dir)?;
        if let Some(parent) = jd.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(jd)
    }

    /// Every job directory in the spool, oldest run first.
    pub fn jobs(&self) -> Result<Vec<JobDir>, SpoolError> {
        let mut out = Vec::new();
        let mut runs: Vec<PathBuf> = fs::read_dir(&self.root)
            .map_err(io_err(&self.root))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        runs.sort();
        for run in runs {
            let mut jobs: Vec<PathBuf> = fs::read_dir(&run)
                .map_err(io_err(&run))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            if jobs.is_empty() {
                let _ = fs::remove_dir(&run);
                continue;
            }
            jobs.sort();
            for dir in jobs {
                out.push(JobDir {
                    dir,
                    spool: self.clone(),
                });
            }
        }
        Ok(out)
    }

    fn reserve(&self, n: u64) -> Result<(), SpoolError> {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur + n > self.limit {
                return Err(SpoolError::Full {
                    used: cur,
                    limit: self.limit,
                    needed: n,
                });
            }
            match self
                .used
                .compare_exchange(cur, cur + n, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    fn release(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

/// A job's directory in the spool.
#[derive(Clone)]
pub struct JobDir {
    dir: PathBuf,
    spool: Spool,
}

impl JobDir {
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn batch_path(&self, seq: u32) -> PathBuf {
        self.dir.join(format!("{seq:010}.batch"))
    }

    pub fn meta(&self) -> Result<JobMeta, SpoolError> {
        self.read_json("job.json")
    }

    pub fn state(&self) -> Result<JobState, SpoolError> {
        if self.dir.join("done.json").exists() {
            return Ok(JobState::Done(self.read_json("done.json")?));
        }
        if self.dir.join("failed.json").exists() {
            let f: FailedMeta = self.read_json("failed.json")?;
            return Ok(JobState::Failed(f.reason));
        }
        Ok(JobState::Interrupted)
    }

    /// Compresses and durably writes batch `seq` (blocking: call from a
    /// blocking thread). Returns its header.
    pub fn write_batch(
        &self,
        seq: u32,
        rows: u64,
        raw: &[u8],
        level: i32,
    ) -> Result<BatchHeader, SpoolError> {
        let mut compressor = BatchCompressor::new(level).map_err(io_err(&self.dir))?;
        self.write_batch_with(&mut compressor, seq, rows, raw)
    }

    /// As [`Self::write_batch`], with the job's compressor.
    pub fn write_batch_with(
        &self,
        compressor: &mut BatchCompressor,
        seq: u32,
        rows: u64,
        raw: &[u8],
    ) -> Result<BatchHeader, SpoolError> {
        let path = self.batch_path(seq);
        let frame = compressor.compress_in_place(raw).map_err(io_err(&path))?;
        let header = BatchHeader {
            seq,
            rows,
            raw_len: raw.len() as u64,
            crc32c: transmissor_proto::checksum::crc32c(raw),
            frame_crc32c: transmissor_proto::checksum::crc32c(frame),
        };
        let size = (HEADER_LEN + frame.len()) as u64;
        self.spool.reserve(size)?;
        let mut head = Vec::with_capacity(HEADER_LEN);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&header.seq.to_le_bytes());
        head.extend_from_slice(&header.rows.to_le_bytes());
        head.extend_from_slice(&header.raw_len.to_le_bytes());
        head.extend_from_slice(&header.crc32c.to_le_bytes());
        head.extend_from_slice(&header.frame_crc32c.to_le_bytes());
        let head_crc = transmissor_proto::checksum::crc32c(&head);
        head.extend_from_slice(&head_crc.to_le_bytes());
        if let Err(e) = write_renamed(&path, &[&head, frame], false) {
            self.spool.release(size);
            return Err(e);
        }
        Ok(header)
    }

    /// Reads batch `seq`, verifying its header and frame CRC.
    pub fn read_batch(&self, seq: u32) -> Result<SpooledBatch, SpoolError> {
        let path = self.batch_path(seq);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err(&path))?;
        let corrupt = |reason: &str| SpoolError::Corrupt {
            path: path.clone(),
            reason: reason.to_string(),
        };
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(corrupt("bad header"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
        if transmissor_proto::checksum::crc32c(&bytes[..32]) != u32_at(32) {
            return Err(corrupt("header checksum mismatch"));
        }
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
        let header = BatchHeader {
            seq: u32_at(4),
            rows: u64_at(8),
            raw_len: u64_at(16),
            crc32c: u32_at(24),
            frame_crc32c: u32_at(28),
        };
        if header.seq != seq {
            return Err(corrupt("sequence number does not match the file name"));
        }
        let frame = bytes.split_off(HEADER_LEN);
        if transmissor_proto::checksum::crc32c(&frame) != header.frame_crc32c {
            return Err(corrupt("frame checksum mismatch"));
        }
        Ok(SpooledBatch { header, frame })
    }

    /// A thread that fsyncs this job's batch files as they are written.
    pub fn syncer(&self) -> BatchSyncer {
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let dir = self.clone();
        let thread = std::thread::Builder::new().name("spool-sync".into()).spawn(
            move || -> Result<(), SpoolError> {
                for seq in rx {
                    let path = dir.batch_path(seq);
                    File::open(&path)
                        .and_then(|f| f.sync_all())
                        .map_err(io_err(&path))?;
                }
                Ok(())
            },
        );
        BatchSyncer {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Marks the extraction complete (after all batches are durable).
    pub fn finish(&self, done: &DoneMeta) -> Result<(), SpoolError> {
        sync_dir(&self.dir)?;
        self.write_json("done.json", done)?;
        sync_dir(&self.dir)
    }

    /// Records that the extraction failed, with the reason to report.
    pub fn mark_failed(&self, reason: &str) -> Result<(), SpoolError> {
        self.write_json(
            "failed.json",
            &FailedMeta {
                reason: reason.to_string(),
            },
        )?;
        sync_dir(&self.dir)
    }

    /// Deletes the job directory (and its run directory when empty).
    pub fn remove(self) -> Result<(), SpoolError> {
        let size = dir_size(&self.dir).unwrap_or(0);
        fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        self.spool.release(size);
        if let Some(run) = self.dir.parent() {
            let _ = fs::remove_dir(run); // only succeeds when empty
        }
        Ok(())
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), SpoolError> {
        let path = self.dir.join(name);
        let body = serde_json::to_vec_pretty(value).map_err(|e| SpoolError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        write_atomic(&path, &[&body])
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T, SpoolError> {
        let path = self.dir.join(name);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| SpoolError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }
}

/// Fsyncs a job's batch files on its own thread, in the order written.
pub struct BatchSyncer {
    tx: Option<std::sync::mpsc::Sender<u32>>,
    thread: Option<io::Result<std::thread::JoinHandle<Result<(), SpoolError>>>>,
}

impl BatchSyncer {
    /// Queues batch `seq` (already renamed to its final name) for fsync.
    pub fn submit(&self, seq: u32) {
        if let Some(tx) = &self.tx {
            // A send fails only when the thread has stopped on an error,
            // which `wait` reports.
            let _ = tx.send(seq);
        }
    }

    /// Waits until every submitted batch is durable.
    pub fn wait(mut self) -> Result<(), SpoolError> {
        drop(self.tx.take());
        match self.thread.take() {
            Some(Ok(handle)) => handle.join().unwrap_or_else(|_| {
                Err(SpoolError::Io {
                    path: PathBuf::from("spool-sync"),
                    source: io::Error::other("the fsync thread panicked"),
                })
            }),
            Some(Err(e)) => Err(SpoolError::Io {
                path: PathBuf::from("spool-sync"),
                source: e,
            }),
            None => Ok(()),
        }
    }
}

/// write to `<path>.tmp`, fsync, rename over `path`.
fn write_atomic(path: &Path, parts: &[&[u8]]) -> Result<(), SpoolError> {
    write_renamed(path, parts, true)
}

/// write to `<path>.tmp` (fsynced when `durable`), rename over `path`.
fn write_renamed(path: &Path, parts: &[&[u8]], durable: bool) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let mut f = private_fs::create_file(&tmp).map_err(io_err(&tmp))?;
    for p in parts {
        f.write_all(p).map_err(io_err(&tmp))?;
    }
    if durable {
        f.sync_all().map_err(io_err(&tmp))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn dir_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_size(&entry.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> JobMeta {
        JobMeta {
            plan: 0,
            run_id: Uuid::now_v7(),
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
        }
    }

    #[test]
    fn write_read_finish_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path(), 1 << 30).unwrap();
        let job = spool.create_job(&meta()).unwrap();
        let raw = b"1\ta\n2\tb\n".repeat(100);
        let h = job.write_batch(1, 200, &raw, 3).unwrap();
        assert_eq!(h.rows, 200);
        assert!(spool.used() > 0);
        assert!(matches!(job.state().unwrap(), JobState::Interrupted));
        let back = job.read_batch(1).unwrap();
        assert_eq!(back.header, h);
        job.finish(&DoneMeta {
            batches: 1,
            rows: 200,
            raw_bytes: raw.len() as u64,
            digest: "d".into(),
            full: false,
            since: None,
        })
        .unwrap();
        assert!(matches!(job.state().unwrap(), JobState::Done(_)));
        // Reopening measures the same usage.
        let again = Spool::open(tmp.path(), 1 << 30).unwrap();
        assert_eq!(again.jobs().unwrap().len(), 1);
        job.remove().unwrap();
        assert_eq!(spool.used(), 0);
        assert!(spool.jobs().unwrap().is_empty());
    }

    #[test]
    fn full_spool_refuses_and_corruption_is_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path(), 64).unwrap();
        let job = spool.create_job(&meta()).unwrap();
        let raw: Vec<u8> = (0..10_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let err = job.write_batch(1, 10_000, &raw, 1).unwrap_err();
        assert!(matches!(err, SpoolError::Full { .. }), "{err}");
        assert!(err.to_string().contains("spool.max_bytes"));

        let spool = Spool::open(tmp.path(), 1 << 30).unwrap();
        let job = spool.create_job(&meta()).unwrap();
        job.write_batch(1, 10_000, &raw, 1).unwrap();
        let p = job.path().join("0000000001.batch");
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x55;
        fs::write(&p, bytes).unwrap();
        assert!(matches!(job.read_batch(1), Err(SpoolError::Corrupt { .. })));
    }
}
