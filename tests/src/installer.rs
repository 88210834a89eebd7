//! The Linux installer under test: a temporary root laid out like a Debian
//! system's (the directories a package expects, and `etc/passwd`, `group`,
//! `shadow`, `gshadow` with their `-` backups, for `useradd --prefix`),
//! snapshots of a tree (kind, owner, mode, content, modification time), and
//! `transmissor-agent install`/`uninstall` run as processes.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Directories every Debian system has, which the installer writes into.
pub const SKELETON_DIRS: &[&str] = &[
    "etc",
    "etc/systemd",
    "etc/systemd/system",
    "lib",
    "lib/systemd",
    "lib/systemd/system",
    "usr",
    "usr/bin",
    "usr/local",
    "usr/local/bin",
    "var",
    "var/lib",
];

/// The account databases (and their backups, as on any installed system).
pub const ACCOUNT_FILES: &[(&str, &str, u32)] = &[
    ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644),
    ("etc/group", "root:x:0:\n", 0o644),
    ("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640),
    ("etc/gshadow", "root:*::\n", 0o640),
];

/// A temporary root with the skeleton.
pub fn make_root() -> Result<tempfile::TempDir> {
    let t = tempfile::Builder::new()
        .prefix("transmissor-root.")
        .tempdir()?;
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755))?;
    for d in SKELETON_DIRS {
        let p = t.path().join(d);
        std::fs::create_dir(&p)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    for (name, text, mode) in ACCOUNT_FILES {
        for n in [name.to_string(), format!("{name}-")] {
            let p = t.path().join(n);
            std::fs::write(&p, text)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
        }
    }
    Ok(t)
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `d`, `f` or `l`.
    pub kind: char,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// SHA-256 of a file's content, or a link's target.
    pub content: String,
    pub mtime_ns: i128,
}

impl Entry {
    /// Kind, owner and mode: `f 0:999 640`.
    pub fn meta(&self) -> String {
        format!("{} {}:{} {:o}", self.kind, self.uid, self.gid, self.mode)
    }
}

/// Every entry under `root` (not `root` itself), by relative path.
pub fn snapshot(root: &Path) -> Result<BTreeMap<PathBuf, Entry>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            let m = std::fs::symlink_metadata(&p)?;
            let (kind, content) = if m.file_type().is_symlink() {
                ('l', std::fs::read_link(&p)?.display().to_string())
            } else if m.is_dir() {
                stack.push(p.clone());
                ('d', String::new())
            } else {
                ('f', hex(&Sha256::digest(std::fs::read(&p)?)))
            };
            out.insert(
                p.strip_prefix(root)?.to_path_buf(),
                Entry {
                    kind,
                    uid: m.uid(),
                    gid: m.gid(),
                    mode: m.mode() & 0o7777,
                    content,
                    mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                },
            );
        }
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The entries of `after` that `before` lacks, as `path → meta`.
pub fn added(
    before: &BTreeMap<PathBuf, Entry>,
    after: &BTreeMap<PathBuf, Entry>,
) -> BTreeMap<String, String> {
    after
        .iter()
        .filter(|(p, _)| !before.contains_key(*p))
        .map(|(p, e)| (p.display().to_string(), e.meta()))
        .collect()
}

/// Entries present in both whose kind, owner, mode or content differ.
pub fn changed(before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>) -> Vec<String> {
    before
        .iter()
        .filter_map(|(p, b)| {
            let a = after.get(p)?;
            (a.meta() != b.meta() || a.content != b.content).then(|| p.display().to_string())
        })
        .collect()
}

/// A user's uid and gid from `ROOT/etc/passwd`.
pub fn ids(root: &Path, user: &str) -> Result<(u32, u32)> {
    let text = std::fs::read_to_string(root.join("etc/passwd"))?;
    let f: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .with_context(|| format!("no user {user} in {}", root.display()))?
        .split(':')
        .collect();
    Ok((f[2].parse()?, f[3].parse()?))
}

/// Runs the agent binary `exe` with `args` (no token or password in the
/// environment but what `envs` adds, stdin closed); (success, output).
pub async fn run(exe: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<(bool, String)> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(args)
        .env_remove("TRANSMISSOR_ENROLL_TOKEN")
        .env_remove("TRANSMISSOR_DB_PASSWORD")
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {}", exe.display()))?;
    Ok(crate::procs::outcome(&out))
}

/// As [`run`], failing unless it succeeds; its output.
pub async fn run_ok(exe: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<String> {
    let (ok, text) = run(exe, args, envs).await?;
    if !ok {
        bail!("{} {} failed:\n{text}", exe.display(), args.join(" "));
    }
    Ok(text)
}

/// The summary lines (`verb  what …`) of an install or uninstall.
pub fn summary_lines(output: &str) -> Vec<(String, String)> {
    const VERBS: &[&str] = &[
        "created",
        "updated",
        "repaired",
        "unchanged",
        "removed",
        "absent",
        "kept",
        "done",
        "skipped",
        "FAILED",
    ];
    output
        .lines()
        .filter_map(|l| {
            let (verb, rest) = l.split_once(' ')?;
            VERBS
                .contains(&verb)
                .then(|| (verb.to_string(), rest.trim_start().to_string()))
        })
        .collect()
}

/// The line about `what` (its start), or an error quoting the output.
pub fn line_for<'a>(lines: &'a [(String, String)], what: &str) -> Result<&'a (String, String)> {
    lines
        .iter()
        .find(|(_, w)| w.starts_with(what))
        .with_context(|| format!("no summary line for {what}: {lines:#?}"))
}
