//! The service's system user and its group.
//!
//! Created with `useradd --system` (no home directory made, no login shell,
//! home = the state directory, so a later uninstall can tell the account is
//! the installer's). Into a `--root` directory, `useradd --prefix ROOT`
//! edits `ROOT/etc/{passwd,group,shadow,gshadow}`, and ids are read from
//! those files; on the live system they are looked up through NSS. An
//! existing user is reused as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use super::command::{self, CommandError};
use super::fsops::Owner;
use super::summary::Outcome;

#[derive(Debug, Error)]
pub enum AccountError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("reading the accounts in {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("looking up user {name}: {error}")]
    Lookup { name: String, error: nix::Error },
    #[error("user {0} was just created but cannot be found")]
    Vanished(String),
    #[error("`{0}` not found: install the shadow utilities (Debian: passwd)")]
    NoTool(&'static str),
    #[error(
        "user {name} exists but is not a service account ({why}): it would own the agent's key, the pseudonym key and the spool; remove or rename it, then run the installer again"
    )]
    NotAServiceAccount { name: String, why: String },
}

/// A user as its passwd entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    pub home: PathBuf,
    /// Login shell.
    pub shell: PathBuf,
}

/// Highest uid of a system account (Debian's `SYS_UID_MAX`).
const SYS_UID_MAX: u32 = 999;

impl User {
    /// Why this account must not be the service account, if it must not:
    /// root, a person's account (uid above the system range) or one that
    /// can log in, or one with another home than the installer gives it.
    fn not_a_service_account(&self, home: &Path) -> Option<String> {
        let shell = self.shell.to_string_lossy();
        if self.uid == 0 {
            Some("uid 0".into())
        } else if self.uid > SYS_UID_MAX {
            Some(format!("uid {} is a person's, not a system uid", self.uid))
        } else if !(shell.ends_with("/nologin") || shell.ends_with("/false")) {
            Some(format!("its shell {shell} allows logins"))
        } else if self.home != home {
            Some(format!(
                "its home is {}, not {}",
                self.home.display(),
                home.display()
            ))
        } else {
            None
        }
    }
}

impl User {
    pub fn owner(&self) -> Owner {
        Owner {
            uid: self.uid,
            gid: self.gid,
        }
    }
}

fn live(root: &Path) -> bool {
    root == Path::new("/")
}

/// The user `name` of the system under `root`, if any.
pub fn lookup_user(root: &Path, name: &str) -> Result<Option<User>, AccountError> {
    if live(root) {
        let u = nix::unistd::User::from_name(name).map_err(|error| AccountError::Lookup {
            name: name.into(),
            error,
        })?;
        return Ok(u.map(|u| User {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
            shell: u.shell,
        }));
    }
    Ok(entries(&root.join("etc/passwd"))?
        .into_iter()
        .find(|f| f.first().is_some_and(|n| n == name))
        .and_then(|f| {
            Some(User {
                name: name.into(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: PathBuf::from(f.get(5)?),
                shell: PathBuf::from(f.get(6).map_or("", |s| s.as_str())),
            })
        }))
}

/// The id of group `name` under `root`, if it exists.
pub fn lookup_group(root: &Path, name: &str) -> Result<Option<u32>, AccountError> {
    if live(root) {
        let g = nix::unistd::Group::from_name(name).map_err(|error| AccountError::Lookup {
            name: name.into(),
            error,
        })?;
        return Ok(g.map(|g| g.gid.as_raw()));
    }
    Ok(entries(&root.join("etc/group"))?
        .into_iter()
        .find(|f| f.first().is_some_and(|n| n == name))
        .and_then(|f| f.get(2)?.parse().ok()))
}

/// `name:x:…` lines split on `:`.
fn entries(path: &Path) -> Result<Vec<Vec<String>>, AccountError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(AccountError::Read {
                path: path.to_path_buf(),
                error,
            });
        }
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect())
}

fn tool(name: &'static str, root: &Path) -> Result<Command, AccountError> {
    let mut cmd = Command::new(command::find(name).ok_or(AccountError::NoTool(name))?);
    if !live(root) {
        cmd.arg("--prefix").arg(root);
    }
    Ok(cmd)
}

/// The user `name` (and its group), created when missing. An existing
/// account of that name is used only when it is a system account that
/// cannot log in, with the installer's home.
pub fn ensure(root: &Path, name: &str, home: &Path) -> Result<(User, Outcome), AccountError> {
    if let Some(u) = lookup_user(root, name)? {
        if let Some(why) = u.not_a_service_account(home) {
            return Err(AccountError::NotAServiceAccount {
                name: name.into(),
                why,
            });
        }
        return Ok((u, Outcome::Unchanged));
    }
    let mut cmd = tool("useradd", root)?;
    cmd.args([
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
    ])
    .arg("--home-dir")
    .arg(home);
    // A group left behind (or made by hand) is used; otherwise one of the
    // same name is made (explicitly: without login.defs' USERGROUPS_ENAB,
    // as in a bare root, useradd would pick the group `users`).
    if lookup_group(root, name)?.is_some() {
        cmd.args(["--gid", name]);
    } else {
        cmd.arg("--user-group");
    }
    command::run(cmd.arg(name))?;
    let u = lookup_user(root, name)?.ok_or_else(|| AccountError::Vanished(name.into()))?;
    Ok((u, Outcome::Created))
}

/// Removes the user `name` and its group, when the user's home is `home`
/// (the installer made it so); any other account is left alone.
pub fn remove(
    root: &Path,
    name: &str,
    home: &Path,
) -> Result<Vec<(String, Outcome)>, AccountError> {
    let user = format!("user {name}");
    let group = format!("group {name}");
    let had_group = lookup_group(root, name)?.is_some();
    match lookup_user(root, name)? {
        Some(u) if u.home != home => {
            let why = format!(
                "its home is {}, not {}: not an account this installer made",
                u.home.display(),
                home.display()
            );
            return Ok(vec![(user, Outcome::Kept(why))]);
        }
        Some(_) => command::run(tool("userdel", root)?.arg(name))?,
        None => return Ok(vec![(user, Outcome::Absent), (group, Outcome::Absent)]),
    };
    // userdel removes the user's own group only where login.defs says
    // USERGROUPS_ENAB yes.
    if lookup_group(root, name)?.is_some() {
        command::run(tool("groupdel", root)?.arg(name))?;
    }
    let group_outcome = if had_group {
        Outcome::Removed
    } else {
        Outcome::Absent
    };
    Ok(vec![(user, Outcome::Removed), (group, group_outcome)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_accounts_under_a_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\ntransmissor:x:998:997::/var/lib/transmissor:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\ntransmissor:x:997:\n",
        )
        .unwrap();
        let u = lookup_user(d.path(), "transmissor").unwrap().unwrap();
        assert_eq!((u.uid, u.gid), (998, 997));
        assert_eq!(u.home, Path::new("/var/lib/transmissor"));
        assert_eq!(lookup_group(d.path(), "transmissor").unwrap(), Some(997));
        assert_eq!(lookup_user(d.path(), "nobody").unwrap(), None);
        let home = Path::new("/var/lib/transmissor");
        assert_eq!(u.not_a_service_account(home), None);
    }

    #[test]
    fn an_existing_account_that_is_not_a_service_account_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        let home = Path::new("/var/lib/transmissor");
        for (line, why) in [
            (
                "transmissor:x:0:0::/var/lib/transmissor:/usr/sbin/nologin",
                "uid 0",
            ),
            (
                "transmissor:x:1000:1000::/var/lib/transmissor:/usr/sbin/nologin",
                "uid 1000",
            ),
            (
                "transmissor:x:998:997::/var/lib/transmissor:/bin/bash",
                "/bin/bash",
            ),
            (
                "transmissor:x:998:997::/home/transmissor:/usr/sbin/nologin",
                "/home/transmissor",
            ),
        ] {
            std::fs::write(d.path().join("etc/passwd"), format!("{line}\n")).unwrap();
            match ensure(d.path(), "transmissor", home) {
                Err(e @ AccountError::NotAServiceAccount { .. }) => {
                    assert!(e.to_string().contains(why), "{e}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }
}
