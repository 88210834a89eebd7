//! One run of a job at a time, across processes: the scheduled agent and a
//! `run --job NAME --now` started by hand never extract or upload the same
//! job at once. Each job has a lock file, `<state_dir>/locks/<job>.lock`,
//! held (an OS file lock: released when the process dies) for the whole
//! run of that job, from recovering its spool to its commit.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// The job locks one run holds.
#[derive(Debug)]
pub struct JobLocks {
    dir: PathBuf,
    held: BTreeMap<String, File>,
}

#[derive(Debug, thiserror::Error)]
#[error("job lock {path}: {source}")]
pub struct LockError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl JobLocks {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            held: BTreeMap::new(),
        }
    }

    /// Whether this run holds `job`'s lock.
    pub fn holds(&self, job: &str) -> bool {
        self.held.contains_key(job)
    }

    /// Takes `job`'s lock if free. `Ok(false)`: another run holds it.
    pub fn try_take(&mut self, job: &str) -> Result<bool, LockError> {
        if self.holds(job) {
            return Ok(true);
        }
        crate::private_fs::create_dir_all(&self.dir).map_err(|source| LockError {
            path: self.dir.clone(),
            source,
        })?;
        // Job names are plain identifiers (checked at parse): safe as file names.
        let path = self.dir.join(format!("{job}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LockError {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {
                self.held.insert(job.to_string(), file);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(source)) => Err(LockError { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_job_cannot_be_taken_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = JobLocks::new(dir.path());
        let mut b = JobLocks::new(dir.path());
        assert!(a.try_take("visitas").unwrap());
        assert!(a.try_take("visitas").unwrap(), "re-entrant for its holder");
        assert!(!b.try_take("visitas").unwrap());
        assert!(b.try_take("equipes").unwrap());
        drop(a);
        assert!(b.try_take("visitas").unwrap(), "released when dropped");
    }
}
