//! Issue #20, "root never acts on what the service account controls": the
//! state directory belongs to the agent's user, and root (`doctor`,
//! `install`) works inside it. Here a state directory owned by another user
//! (`nobody`) gets what that user could plant — symbolic links named like
//! the files root writes, a directory replaced by a link to a directory
//! outside, a hard link to a file outside — and the privileged operation
//! runs as root (these tests run as root; as another user they only check
//! what that user can). The files outside keep their content, owner and
//! mode; the operation refuses or works on the state directory's own
//! entries. The pseudonym key is refused when others may read it or it is
//! not the agent's, and exporting it leaves nothing but the file asked for.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use anyhow::{Context, Result, ensure};

use transmissor_agent::doctor::report;
use transmissor_agent::install::fsops::{self, Owner};
use transmissor_agent::pseudonym_key::{self, PseudonymKeyError};
use transmissor_proto::pb;

/// An unprivileged user to own the state directory: `nobody`.
fn other_user() -> Result<Owner> {
    let u = nix::unistd::User::from_name("nobody")?.context("no user nobody")?;
    Ok(Owner {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    })
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Content, owner and mode of a file, to compare before and after.
fn fingerprint(p: &Path) -> Result<(Vec<u8>, u32, u32, u32)> {
    let m = fs::symlink_metadata(p)?;
    let content = if m.is_file() {
        fs::read(p)?
    } else {
        Vec::new()
    };
    Ok((content, m.uid(), m.gid(), m.mode()))
}

/// A directory outside the state directory with a file root owns.
fn outside(root: &Path) -> Result<std::path::PathBuf> {
    let o = root.join("outside");
    fs::create_dir(&o)?;
    fs::set_permissions(&o, fs::Permissions::from_mode(0o755))?;
    let f = o.join("shadow");
    fs::write(&f, "root:secret:19000::::::\n")?;
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640))?;
    Ok(o)
}

/// A state directory owned by the other user (when we are root).
fn state_dir(root: &Path, owner: Owner) -> Result<std::path::PathBuf> {
    let s = root.join("state");
    fs::create_dir(&s)?;
    fs::set_permissions(&s, fs::Permissions::from_mode(0o700))?;
    if is_root() {
        std::os::unix::fs::chown(&s, Some(owner.uid), Some(owner.gid))?;
    }
    Ok(s)
}

#[test]
fn doctor_summary_follows_no_planted_link() -> Result<()> {
    let owner = other_user()?;
    let dir = tempfile::tempdir()?;
    let out = outside(dir.path())?;
    let target = out.join("shadow");
    let other = out.join("passwd");
    fs::write(&other, "root:x:0:0::/root:/bin/sh\n")?;
    let state = state_dir(dir.path(), owner)?;
    // What the agent's user plants: the temporary file and the summary
    // itself as links to root's files.
    symlink(&target, state.join("doctor.pb.tmp"))?;
    symlink(&other, state.join("doctor.pb"))?;
    let before = (fingerprint(&target)?, fingerprint(&other)?);

    let summary = pb::DoctorSummary {
        ran_at_unix_ms: 1,
        passed: 3,
        ..Default::default()
    };
    report::save_summary(&state, &summary)?;

    assert_eq!((fingerprint(&target)?, fingerprint(&other)?), before);
    let kept = state.join("doctor.pb");
    let m = fs::symlink_metadata(&kept)?;
    ensure!(m.is_file(), "the summary is a plain file");
    assert_eq!(m.mode() & 0o777, 0o600);
    if is_root() {
        assert_eq!((m.uid(), m.gid()), (owner.uid, owner.gid));
    }
    assert_eq!(report::load_summary(&state), Some(summary));
    ensure!(!state.join("doctor.pb.tmp").exists());
    Ok(())
}

/// The doctor's spool check (run as root) proves the spool takes writes
/// by creating and removing a file there; through a `spool` the agent's
/// user replaced by a link, root would create and remove files in any
/// directory. The link is refused and named; the directory it points to
/// sees nothing.
#[test]
fn doctor_spool_probe_follows_no_planted_link() -> Result<()> {
    use transmissor_agent::doctor::{Finding, local};
    let owner = other_user()?;
    let dir = tempfile::tempdir()?;
    let out = outside(dir.path())?;
    let state = state_dir(dir.path(), owner)?;
    symlink(&out, state.join("spool"))?;
    let before = fs::metadata(&out)?.mtime_nsec() + fs::metadata(&out)?.mtime() * 1_000_000_000;
    let config = transmissor_agent::config::AgentConfig::parse(&format!(
        r#"
version = 1
[agent]
state_dir = "{}"
[source]
host = "127.0.0.1"
dbname = "esus"
user = "leitor"
password_env = "PGPASS_TEST"
[collector]
endpoint = "https://127.0.0.1:7443"
[plan]
keys = ["ed25519:3iOpMFQd2PBvFd9OoeYj/InUkkZfnNdqcfTM4DmMjJo="]
"#,
        state.display()
    ))?;
    let item = local::spool(&config);
    match &item.finding {
        Finding::SpoolNotWritable { error, .. } => {
            ensure!(error.contains("symbolic link"), "{error}")
        }
        other => anyhow::bail!("the spool check went through the link: {other:?}"),
    }
    let after = fs::metadata(&out)?.mtime_nsec() + fs::metadata(&out)?.mtime() * 1_000_000_000;
    assert_eq!(before, after, "nothing was created or removed outside");
    Ok(())
}

#[test]
fn install_chown_tree_stays_inside() -> Result<()> {
    if !is_root() {
        return Ok(()); // Changing owners needs root.
    }
    let owner = other_user()?;
    let dir = tempfile::tempdir()?;
    let out = outside(dir.path())?;
    let target = out.join("shadow");
    let state = state_dir(dir.path(), owner)?;
    // `identity` and `plan` replaced by links to a directory and a file
    // outside; a real subdirectory with a root-owned file to repair.
    symlink(&out, state.join("identity"))?;
    symlink(&target, state.join("plan"))?;
    fs::create_dir(state.join("spool"))?;
    fs::write(state.join("spool/batch"), "x")?;
    let before = (fingerprint(&out)?, fingerprint(&target)?);

    let fixed = fsops::chown_tree(&state, owner)?;

    assert_eq!((fingerprint(&out)?, fingerprint(&target)?), before);
    // The links themselves, the spool and its file: the agent's now.
    for p in ["identity", "plan", "spool", "spool/batch"] {
        let m = fs::symlink_metadata(state.join(p))?;
        assert_eq!((m.uid(), m.gid()), (owner.uid, owner.gid), "{p}");
    }
    assert_eq!(fixed, 4);

    // A hard link to a file outside is refused, its owner untouched.
    let linked = state.join("spool/linked");
    fs::hard_link(&target, &linked)?;
    let err = fsops::chown_tree(&state, owner).expect_err("a hard link is refused");
    ensure!(err.to_string().contains("hard links"), "{err}");
    assert_eq!(fingerprint(&target)?, before.1);
    Ok(())
}

#[test]
fn install_repairs_refuse_links_and_hard_links() -> Result<()> {
    if !is_root() {
        return Ok(()); // Changing owners needs root.
    }
    let owner = other_user()?;
    let dir = tempfile::tempdir()?;
    let out = outside(dir.path())?;
    let target = out.join("shadow");
    let state = state_dir(dir.path(), owner)?;
    symlink(&out, state.join("identity"))?;
    fs::hard_link(&target, state.join("pseudonym.key"))?;
    let before = (fingerprint(&out)?, fingerprint(&target)?);

    ensure!(fsops::ensure_dir(&state.join("identity"), owner, 0o700).is_err());
    let err = fsops::fix_meta(&state.join("pseudonym.key"), owner, 0o600)
        .expect_err("a hard link is refused");
    ensure!(err.to_string().contains("hard link"), "{err}");
    ensure!(fsops::fix_meta(&state.join("identity"), owner, 0o700).is_err());
    assert_eq!((fingerprint(&out)?, fingerprint(&target)?), before);

    // A real directory is still repaired.
    fs::create_dir(state.join("plan"))?;
    fs::set_permissions(state.join("plan"), fs::Permissions::from_mode(0o755))?;
    fsops::ensure_dir(&state.join("plan"), owner, 0o700)?;
    let m = fs::symlink_metadata(state.join("plan"))?;
    assert_eq!((m.uid(), m.mode() & 0o7777), (owner.uid, 0o700));
    Ok(())
}

fn write_key(state: &Path, mode: u32) -> Result<()> {
    let p = pseudonym_key::path(state);
    fs::write(&p, format!("{}\n", "ab".repeat(32)))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[test]
fn pseudonym_key_must_be_private_and_the_agents() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    fs::create_dir(&state)?;

    // Readable by others: refused, with the path and the fix.
    write_key(&state, 0o644)?;
    let err = pseudonym_key::load(&state).expect_err("a 0644 key is refused");
    ensure!(
        matches!(err, PseudonymKeyError::OpenToOthers { .. }),
        "{err}"
    );
    let text = err.to_string();
    ensure!(
        text.contains("chmod 600")
            && text.contains(&pseudonym_key::path(&state).display().to_string()),
        "{text}"
    );
    write_key(&state, 0o600)?;
    ensure!(pseudonym_key::load(&state)?.is_some());

    // A link in place of the key is not followed.
    let elsewhere = dir.path().join("elsewhere.key");
    fs::rename(pseudonym_key::path(&state), &elsewhere)?;
    symlink(&elsewhere, pseudonym_key::path(&state))?;
    ensure!(pseudonym_key::load(&state).is_err(), "a link is refused");
    fs::remove_file(pseudonym_key::path(&state))?;

    // Owned by another user than the agent's (as root: than the state
    // directory's owner): refused.
    if is_root() {
        let owner = other_user()?;
        write_key(&state, 0o600)?;
        std::os::unix::fs::chown(
            pseudonym_key::path(&state),
            Some(owner.uid),
            Some(owner.gid),
        )?;
        let err = pseudonym_key::load(&state).expect_err("another user's key is refused");
        ensure!(matches!(err, PseudonymKeyError::WrongOwner { .. }), "{err}");
        std::os::unix::fs::chown(&state, Some(owner.uid), Some(owner.gid))?;
        ensure!(
            pseudonym_key::load(&state)?.is_some(),
            "the agent's key loads as root"
        );
    }
    Ok(())
}

#[test]
fn pseudonym_key_export_leaves_no_other_copy() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    fs::create_dir(&state)?;
    let (key, _) = pseudonym_key::load_or_create(&state)?;
    let listing = |d: &Path| -> Result<Vec<String>> {
        let mut v: Vec<String> = fs::read_dir(d)?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        v.sort();
        Ok(v)
    };
    let state_before = listing(&state)?;

    // To standard output: the text, and no file anywhere.
    let mut out = Vec::new();
    pseudonym_key::export_to(&state, &mut out)?;
    assert_eq!(out, format!("{}\n", hex(key.bytes())).into_bytes());
    assert_eq!(listing(&state)?, state_before);

    // To a path: that file only, exactly 0600, even under a loose umask.
    let exports = dir.path().join("exports");
    fs::create_dir(&exports)?;
    let file = exports.join("key");
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let r = pseudonym_key::export(&state, &file);
    nix::sys::stat::umask(old);
    r?;
    assert_eq!(listing(&exports)?, ["key"]);
    assert_eq!(fs::metadata(&file)?.mode() & 0o777, 0o600);
    assert_eq!(listing(&state)?, state_before);

    // Never through a planted link.
    let target = dir.path().join("victim");
    fs::write(&target, "keep")?;
    let link = exports.join("link");
    symlink(&target, &link)?;
    ensure!(pseudonym_key::export(&state, &link).is_err());
    assert_eq!(fs::read_to_string(&target)?, "keep");
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The `.deb`'s real `postinst`, with its account, state and config paths
/// pointed at a temporary root (the account: `postgres`, an existing user
/// and group, so nothing is added to this machine): a state directory
/// whose `identity` is a link to a directory outside and whose `plan` is a
/// link to a file outside. Root's files keep their owner and mode; the
/// missing `spool` is made, the account's, 0700.
#[test]
fn postinst_follows_no_planted_link() -> Result<()> {
    if !is_root() {
        return Ok(()); // A maintainer script runs as root.
    }
    let pg = nix::unistd::User::from_name("postgres")?.context("no user postgres")?;
    let owner = Owner {
        uid: pg.uid.as_raw(),
        gid: pg.gid.as_raw(),
    };
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    // The account must reach its state directory, as under /var/lib.
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    let out = outside(root)?;
    let target = out.join("shadow");
    let state = root.join("var/lib/transmissor");
    fs::create_dir_all(&state)?;
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700))?;
    std::os::unix::fs::chown(&state, Some(owner.uid), Some(owner.gid))?;
    symlink(&out, state.join("identity"))?;
    symlink(&target, state.join("plan"))?;
    let before = (fingerprint(&out)?, fingerprint(&target)?);

    let script = transmissor_agent::install::deb::POSTINST
        .replace("USER=transmissor", "USER=postgres")
        .replace("/var/lib/transmissor", &state.display().to_string())
        .replace(
            "/etc/transmissor",
            &root.join("etc/transmissor").display().to_string(),
        );
    ensure!(!script.contains("=/var/lib") && !script.contains(" /etc/transmissor"));
    let path = root.join("postinst");
    fs::write(&path, script)?;
    let run = std::process::Command::new("sh")
        .arg(&path)
        .arg("configure")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        (fingerprint(&out)?, fingerprint(&target)?),
        before,
        "{said}"
    );
    ensure!(run.status.success(), "{said}");
    let spool = fs::symlink_metadata(state.join("spool"))?;
    ensure!(spool.is_dir());
    assert_eq!((spool.uid(), spool.mode() & 0o777), (owner.uid, 0o700));
    Ok(())
}
