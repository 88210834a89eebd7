//! The agent's spool on disk, as the faults see it: job directories, batch
//! files, and the flipped bytes of `corrupt-spool`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

/// `<spool>/<run>/<job>` directories.
pub(super) fn job_dirs(spool: &Path) -> Vec<PathBuf> {
    let subdirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    };
    subdirs(spool).iter().flat_map(|r| subdirs(r)).collect()
}

/// A job directory's batch files by sequence number.
fn batch_files(job: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(job)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "batch"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
        .collect();
    out.sort();
    out
}

pub(super) fn spooled_batches(spool: &Path) -> u64 {
    job_dirs(spool)
        .iter()
        .map(|d| batch_files(d).len() as u64)
        .sum()
}

pub(super) fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Flips 1 to 4 bytes of a random batch of `job` the collector does not
/// hold (in its header or its frame); describes what it did.
pub(super) fn flip_unheld_batch(
    rng: &mut StdRng,
    job: &Path,
    held: &BTreeSet<u32>,
) -> Result<String> {
    let files = batch_files(job);
    let unheld: Vec<&(u32, PathBuf)> = files.iter().filter(|(s, _)| !held.contains(s)).collect();
    let Some(&(seq, path)) = unheld.choose(rng) else {
        bail!(
            "all {} spooled batches were already held; nothing to corrupt",
            files.len()
        );
    };
    let mut bytes = std::fs::read(path)?;
    let in_header = rng.random_bool(0.25);
    let range = if in_header { 0..36 } else { 36..bytes.len() };
    let flips = rng.random_range(1..=4);
    for _ in 0..flips {
        let at = rng.random_range(range.clone());
        bytes[at] ^= rng.random_range(1..=255u8);
    }
    std::fs::write(path, &bytes)?;
    let part = if in_header { "header" } else { "frame" };
    Ok(format!(
        "batch {seq} of {} spooled ({} held): {flips} byte(s) flipped in its {part}",
        files.len(),
        held.len()
    ))
}
