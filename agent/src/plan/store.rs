//! The accepted plan and key lists on disk, under `<state_dir>/plan/`
//! (0700):
//!
//! ```text
//! current.signed         the running plan's envelope, byte for byte
//! accepted.json          {"version": N, "sha256": "…"}: the highest version accepted
//! key-lists/<serial>.signed  each accepted plan-key list, in chain order
//! schedule.json          the schedule ledger (crate::schedule::Ledger)
//! ```
//!
//! Every file is written to a temporary name, fsynced and renamed
//! ([`crate::identity::write_atomic`]). At start, the plan and the key
//! lists are verified again from the pinned keys: nothing on disk is
//! trusted because it is there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::verify::Accepted;

#[derive(Debug, thiserror::Error)]
#[error("plan state {path}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

#[derive(Debug, Clone)]
pub struct PlanStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct AcceptedFile {
    version: u64,
    sha256: String,
}

impl PlanStore {
    /// Opens (creating, owner-only) the plan state directory.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        crate::private_fs::create_dir_all(&dir.join("key-lists")).map_err(|source| StoreError {
            path: dir.to_path_buf(),
            source,
        })?;
        crate::private_fs::ensure_private_dir(dir).map_err(|source| StoreError {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&self, path: PathBuf, bytes: &[u8]) -> Result<(), StoreError> {
        crate::identity::write_atomic(&path, bytes, false)
            .map_err(|source| StoreError { path, source })
    }

    fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The running plan's envelope, when one was accepted.
    pub fn current(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Self::read_opt(&self.dir.join("current.signed"))
    }

    /// The highest version accepted (an unreadable record counts as none:
    /// the running plan's own version still bounds what is accepted).
    pub fn accepted(&self) -> Result<Option<Accepted>, StoreError> {
        let Some(b) = Self::read_opt(&self.dir.join("accepted.json"))? else {
            return Ok(None);
        };
        let Ok(f) = serde_json::from_slice::<AcceptedFile>(&b) else {
            tracing::warn!(dir = %self.dir.display(), "accepted.json is not readable; the running plan's version bounds what is accepted");
            return Ok(None);
        };
        let mut sha256 = [0u8; 32];
        if hex::decode_to_slice(&f.sha256, &mut sha256).is_err() {
            return Ok(None);
        }
        Ok(Some(Accepted {
            version: f.version,
            sha256,
        }))
    }

    /// Records a newly accepted plan: its envelope, then the version.
    pub fn accept(&self, envelope: &[u8], accepted: Accepted) -> Result<(), StoreError> {
        self.write(self.dir.join("current.signed"), envelope)?;
        let f = AcceptedFile {
            version: accepted.version,
            sha256: hex::encode(accepted.sha256),
        };
        self.write(
            self.dir.join("accepted.json"),
            &serde_json::to_vec_pretty(&f).unwrap_or_default(),
        )
    }

    /// The accepted key lists, in serial order.
    pub fn key_lists(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let dir = self.dir.join("key-lists");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| StoreError {
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "signed"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                std::fs::read(p).map_err(|source| StoreError {
                    path: p.clone(),
                    source,
                })
            })
            .collect()
    }

    /// Keeps an accepted key list (serial-ordered file names).
    pub fn add_key_list(&self, serial: u64, envelope: &[u8]) -> Result<(), StoreError> {
        self.write(
            self.dir
                .join("key-lists")
                .join(format!("{serial:020}.signed")),
            envelope,
        )
    }
}
