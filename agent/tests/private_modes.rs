//! The spool and the identity directory are owner-only whatever the umask:
//! directories 0700, data files 0600, and a spool directory found open to
//! others is tightened. Its own test binary, because the umask is
//! process-wide: each test here sets it to 0 (the most permissive) first.
//! Unix only: on Windows the installer's ACLs do this (`private_fs`).

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use transmissor_agent::config::Mode;
use transmissor_agent::identity::{self, IdentityPaths};
use transmissor_agent::pipeline::spool::{DoneMeta, JobMeta, Spool};
use uuid::Uuid;

#[allow(unsafe_code)]
fn permissive_umask() {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0) };
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every directory and file under `root` (itself included) and its mode.
fn modes(root: &Path) -> Vec<(std::path::PathBuf, bool, u32)> {
    let mut out = vec![(root.to_path_buf(), true, mode(root))];
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(modes(&p));
        } else {
            out.push((p.clone(), false, mode(&p)));
        }
    }
    out
}

fn meta() -> JobMeta {
    JobMeta {
        plan: 0,
        run_id: Uuid::now_v7(),
        job: "cidadaos".into(),
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
fn spool_is_owner_only_whatever_the_umask() {
    permissive_umask();
    let tmp = tempfile::tempdir().unwrap();
    // A state directory the agent creates, with the spool in it.
    let root = tmp.path().join("state").join("spool");
    let spool = Spool::open(&root, 1 << 30).unwrap();
    let job = spool.create_job(&meta()).unwrap();
    job.write_batch(1, 2, b"1\tJoao\n2\tMaria\n", 3).unwrap();
    job.finish(&DoneMeta {
        batches: 1,
        rows: 2,
        raw_bytes: 15,
        digest: "d".into(),
        full: false,
        since: None,
    })
    .unwrap();
    assert_eq!(mode(&tmp.path().join("state")), 0o700);
    let all = modes(&root);
    assert!(all.len() >= 6, "{all:?}"); // spool, run, job, job.json, batch, done.json
    for (path, dir, m) in all {
        let want = if dir { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{} is {m:o}", path.display());
    }
}

#[test]
fn an_open_spool_directory_is_tightened() {
    permissive_umask();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("spool");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    Spool::open(&root, 1 << 30).unwrap();
    assert_eq!(mode(&root), 0o700);
}

#[test]
fn identity_directory_and_key_are_owner_only() {
    permissive_umask();
    let tmp = tempfile::tempdir().unwrap();
    let paths = IdentityPaths::in_state_dir(&tmp.path().join("state"));
    identity::store(&paths, "KEY", "CHAIN", "TRUST").unwrap();
    let dir = paths.key.parent().unwrap();
    assert_eq!(mode(dir), 0o700);
    assert_eq!(mode(&paths.key), 0o600);

    // Found open to others: tightened at the next store.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    identity::store(&paths, "KEY2", "CHAIN2", "TRUST2").unwrap();
    assert_eq!(mode(dir), 0o700);
}
