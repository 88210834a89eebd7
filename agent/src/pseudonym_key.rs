//! The pseudonym key: 32 random bytes that key the HMAC-SHA256 of every
//! pseudonymised value ([`crate::pipeline::pseudonym`]). It is this
//! agent's alone: never sent to the collector, never logged, so the centre
//! cannot reverse a pseudonym or test a guessed CPF against one, and two
//! municipalities' pseudonyms of one person differ.
//!
//! ```text
//! <state_dir>/pseudonym.key   0600, 64 lowercase hex digits and a newline
//! ```
//!
//! It sits beside `identity/`, not inside it: enrollment, re-enrollment
//! (`enroll --force`) and certificate renewal replace the identity's files
//! and never touch it, so pseudonyms stay stable across them. It is made by
//! `transmissor-agent install`, or at the first extraction that needs it;
//! once made it is never replaced, except by an explicit `pseudonym-key
//! import --replace` (moving a municipality to a new machine keeps its
//! pseudonyms with `pseudonym-key export` on the old one and `import` on
//! the new one). Creation never overwrites: the key is written to a
//! temporary file and hard-linked into place, so two processes creating it
//! at once end up with the same key.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::TryRngCore;
use thiserror::Error;
use zeroize::Zeroize;

/// File name of the key in the state directory.
pub const KEY_FILE: &str = "pseudonym.key";

/// Key length in bytes.
pub const KEY_BYTES: usize = 32;

#[derive(Debug, Error)]
pub enum PseudonymKeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a pseudonym key (64 hexadecimal digits expected)")]
    Invalid { path: PathBuf },
    #[error(
        "{path} already holds another pseudonym key; importing would change every pseudonym this municipality sends (use --replace only when the old key must go)"
    )]
    Exists { path: PathBuf },
    #[error("{0} exists; the key is not written over a file")]
    OutputExists(PathBuf),
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    #[error(
        "{path} can be read or written by other users (mode {mode:03o}); the pseudonym key must be its owner's only: chmod 600 {path}"
    )]
    OpenToOthers { path: PathBuf, mode: u32 },
    #[error(
        "{path} belongs to user id {owner}, not to the agent's user (id {expected}): whoever owns it can change every pseudonym; chown it to the agent's user, or import the key again"
    )]
    WrongOwner {
        path: PathBuf,
        owner: u32,
        expected: u32,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PseudonymKeyError + '_ {
    move |source| PseudonymKeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The key. Its bytes are never printed (`Debug` shows nothing) and are
/// wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct PseudonymKey([u8; KEY_BYTES]);

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(…)")
    }
}

impl Drop for PseudonymKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PseudonymKey {
    /// A new random key (the operating system's generator, through `rand`).
    pub fn generate() -> Result<Self, PseudonymKeyError> {
        let mut key = Self([0u8; KEY_BYTES]);
        rand::rngs::OsRng
            .try_fill_bytes(&mut key.0)
            .map_err(|e| PseudonymKeyError::Random(e.to_string()))?;
        Ok(key)
    }

    pub fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// The file's text: 64 lowercase hex digits and a newline.
    fn to_text(&self) -> String {
        format!("{}\n", hex::encode(self.0))
    }

    /// Reads the file's text (surrounding whitespace ignored).
    fn parse(text: &[u8], path: &Path) -> Result<Self, PseudonymKeyError> {
        let invalid = || PseudonymKeyError::Invalid {
            path: path.to_path_buf(),
        };
        let text = std::str::from_utf8(text).map_err(|_| invalid())?.trim();
        if text.len() != 2 * KEY_BYTES {
            return Err(invalid());
        }
        let mut b = [0u8; KEY_BYTES];
        hex::decode_to_slice(text, &mut b).map_err(|_| invalid())?;
        Ok(Self(b))
    }
}

/// Where the key lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEY_FILE)
}

/// The key, if it exists. It must be a plain file (a symbolic link is not
/// followed), not open to other users, and owned by the user running this
/// or, when that is root, by the state directory's owner (the agent's
/// user): otherwise it is refused with the path and the fix.
pub fn load(state_dir: &Path) -> Result<Option<PseudonymKey>, PseudonymKeyError> {
    use std::io::Read;
    let p = path(state_dir);
    let (mut f, meta) = match crate::private_fs::open_regular(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&p)(e)),
    };
    check_private(state_dir, &p, &meta)?;
    let mut text = Vec::new();
    let read = f.read_to_end(&mut text);
    let key = read
        .map_err(io_err(&p))
        .and_then(|_| PseudonymKey::parse(&text, &p));
    text.zeroize();
    key.map(Some)
}

/// The key file's mode and owner, from the open file.
#[cfg(unix)]
fn check_private(state_dir: &Path, p: &Path, meta: &fs::Metadata) -> Result<(), PseudonymKeyError> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PseudonymKeyError::OpenToOthers {
            path: p.to_path_buf(),
            mode,
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    let expected = if me == 0 {
        fs::metadata(state_dir).map_err(io_err(state_dir))?.uid()
    } else {
        me
    };
    if meta.uid() != expected && meta.uid() != me {
        return Err(PseudonymKeyError::WrongOwner {
            path: p.to_path_buf(),
            owner: meta.uid(),
            expected,
        });
    }
    Ok(())
}

/// On Windows the data directory's ACL (the installer's) protects it.
#[cfg(not(unix))]
fn check_private(_: &Path, _: &Path, _: &fs::Metadata) -> Result<(), PseudonymKeyError> {
    Ok(())
}

/// The key, made now if it does not exist yet (`true`: made now).
pub fn load_or_create(state_dir: &Path) -> Result<(PseudonymKey, bool), PseudonymKeyError> {
    if let Some(key) = load(state_dir)? {
        return Ok((key, false));
    }
    let key = PseudonymKey::generate()?;
    if put(state_dir, &key, false)? {
        tracing::info!(path = %path(state_dir).display(), "pseudonym key created");
        return Ok((key, true));
    }
    // Another process made it first: use that one.
    let key = load(state_dir)?.ok_or_else(|| PseudonymKeyError::Invalid {
        path: path(state_dir),
    })?;
    Ok((key, false))
}

/// Writes `key` as the state directory's key: never over an existing one
/// unless `replace`. Returns whether it was written.
fn put(state_dir: &Path, key: &PseudonymKey, replace: bool) -> Result<bool, PseudonymKeyError> {
    crate::private_fs::create_dir_all(state_dir).map_err(io_err(state_dir))?;
    let dest = path(state_dir);
    let tmp = state_dir.join(format!(
        ".{KEY_FILE}.{}.{}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| -> io::Result<bool> {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, crate::private_fs::FILE_MODE);
        let mut f = opts.open(&tmp)?;
        // Run as root (install, import), the key still belongs to the
        // agent's user, who owns the state directory.
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let owner = fs::metadata(state_dir)?;
            std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid()))?;
        }
        let mut text = key.to_text();
        let w = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
        text.zeroize();
        w?;
        drop(f);
        let placed = if replace {
            fs::rename(&tmp, &dest).map(|()| true)
        } else {
            match fs::hard_link(&tmp, &dest) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        };
        let _ = fs::remove_file(&tmp);
        let placed = placed?;
        #[cfg(unix)]
        fs::File::open(state_dir)?.sync_all()?;
        Ok(placed)
    })();
    let _ = fs::remove_file(&tmp);
    written.map_err(io_err(&dest))
}

/// The key, for [`export`] and [`export_to`].
fn existing(state_dir: &Path) -> Result<PseudonymKey, PseudonymKeyError> {
    load(state_dir)?.ok_or_else(|| PseudonymKeyError::Io {
        path: path(state_dir),
        source: io::Error::new(io::ErrorKind::NotFound, "no pseudonym key yet"),
    })
}

/// Writes the key's text to `w` (standard output: `--out -`), nothing
/// else written anywhere.
pub fn export_to(state_dir: &Path, w: &mut dyn Write) -> Result<(), PseudonymKeyError> {
    let key = existing(state_dir)?;
    let mut text = key.to_text();
    let written = w.write_all(text.as_bytes()).and_then(|()| w.flush());
    text.zeroize();
    written.map_err(io_err(Path::new("-")))
}

/// Copies the key to `out` (created new, exactly 0600, never over an
/// existing file or through a link), for moving the municipality to
/// another machine. No other copy is made; if writing fails, the partial
/// file is removed.
pub fn export(state_dir: &Path, out: &Path) -> Result<(), PseudonymKeyError> {
    let key = existing(state_dir)?;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, crate::private_fs::FILE_MODE);
    let mut f = opts.open(out).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            PseudonymKeyError::OutputExists(out.to_path_buf())
        } else {
            io_err(out)(e)
        }
    })?;
    #[cfg(unix)]
    let exact = {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(crate::private_fs::FILE_MODE))
    };
    #[cfg(not(unix))]
    let exact: io::Result<()> = Ok(());
    let mut text = key.to_text();
    let w = exact
        .and_then(|()| f.write_all(text.as_bytes()))
        .and_then(|()| f.sync_all());
    text.zeroize();
    if w.is_err() {
        drop(f);
        let _ = fs::remove_file(out);
    }
    w.map_err(io_err(out))
}

/// What [`import`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// There was no key: the imported one is now the key.
    Installed,
    /// The same key was already there.
    Unchanged,
    /// Another key was there and `replace` was given.
    Replaced,
}

/// Makes the key in `file` this agent's key. An existing other key is
/// replaced only with `replace` (every pseudonym changes with it).
pub fn import(state_dir: &Path, file: &Path, replace: bool) -> Result<Imported, PseudonymKeyError> {
    let mut text = fs::read(file).map_err(io_err(file))?;
    let key = PseudonymKey::parse(&text, file);
    text.zeroize();
    let key = key?;
    match load(state_dir)? {
        Some(existing) if existing == key => Ok(Imported::Unchanged),
        Some(_) if !replace => Err(PseudonymKeyError::Exists {
            path: path(state_dir),
        }),
        Some(_) => {
            put(state_dir, &key, true)?;
            tracing::warn!(path = %path(state_dir).display(), "pseudonym key replaced by an imported one");
            Ok(Imported::Replaced)
        }
        None => {
            if put(state_dir, &key, false)? {
                Ok(Imported::Installed)
            } else {
                // Created in the meantime by a run: compare again.
                import(state_dir, file, replace)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, made) = load_or_create(dir.path()).unwrap();
        assert!(made);
        let (b, made) = load_or_create(dir.path()).unwrap();
        assert!(!made);
        assert_eq!(a, b);
        let text = fs::read_to_string(path(dir.path())).unwrap();
        assert_eq!(text, format!("{}\n", hex::encode(a.bytes())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path(dir.path())).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(format!("{a:?}"), "PseudonymKey(…)");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_creation_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<PseudonymKey> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(dir.path()).unwrap().0))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn export_then_import_elsewhere() {
        let old = tempfile::tempdir().unwrap();
        let new = tempfile::tempdir().unwrap();
        let (key, _) = load_or_create(old.path()).unwrap();
        let file = old.path().join("export.key");
        export(old.path(), &file).unwrap();
        assert!(matches!(
            export(old.path(), &file),
            Err(PseudonymKeyError::OutputExists(_))
        ));
        assert_eq!(
            import(new.path(), &file, false).unwrap(),
            Imported::Installed
        );
        assert_eq!(load(new.path()).unwrap(), Some(key.clone()));
        assert_eq!(
            import(new.path(), &file, false).unwrap(),
            Imported::Unchanged
        );

        // Another key is not replaced without asking.
        let other = tempfile::tempdir().unwrap();
        let (other_key, _) = load_or_create(other.path()).unwrap();
        assert!(matches!(
            import(other.path(), &file, false),
            Err(PseudonymKeyError::Exists { .. })
        ));
        assert_eq!(load(other.path()).unwrap(), Some(other_key));
        assert_eq!(
            import(other.path(), &file, true).unwrap(),
            Imported::Replaced
        );
        assert_eq!(load(other.path()).unwrap(), Some(key));
    }

    #[test]
    fn a_damaged_key_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(path(dir.path()), "not a key\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path(dir.path()), fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(
            load_or_create(dir.path()),
            Err(PseudonymKeyError::Invalid { .. })
        ));
        assert_eq!(fs::read_to_string(path(dir.path())).unwrap(), "not a key\n");
    }
}
