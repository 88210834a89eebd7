//! Secrets (database passwords) come from a file readable by its owner only,
//! or from an environment variable — never from a command line or a config
//! file's body — and their values are never formatted into errors or logs.

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secret file {path} has permissions {mode:o}; make it readable by its owner only (chmod 600)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
}

/// The secret from `file` (preferred) or the environment variable `env`;
/// `None` when neither is configured. A trailing newline is dropped.
pub fn from_file_or_env(
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<String>, SecretError> {
    if let Some(path) = file {
        check_permissions(path)?;
        let s = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        return Ok(Some(s.trim_end_matches(['\r', '\n']).to_string()));
    }
    if let Some(var) = env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| SecretError::EnvMissing(var.to_string()));
    }
    Ok(None)
}

/// A secret file must not be readable by group or others.
pub fn check_permissions(path: &Path) -> Result<(), SecretError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn file_permissions_are_enforced() {
        let dir = std::env::temp_dir().join(format!("transmissor-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = from_file_or_env(Some(&p), None).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(!e.to_string().contains("s3cret"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            from_file_or_env(Some(&p), None).unwrap().as_deref(),
            Some("s3cret")
        );
        assert!(from_file_or_env(None, Some("TRANSMISSOR_SURELY_UNSET_VAR")).is_err());
        assert_eq!(from_file_or_env(None, None).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
