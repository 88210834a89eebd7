//! The system's tools (`useradd`, `systemctl`, `dpkg-deb`…), run with
//! their output captured and a failure turned into an error that quotes
//! the command line and what the tool said.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CommandError {
    #[error("`{line}` could not be started: {error}")]
    Spawn { line: String, error: std::io::Error },
    #[error("`{line}` failed ({status}): {output}")]
    Failed {
        line: String,
        status: std::process::ExitStatus,
        output: String,
    },
}

/// The command line, for messages.
pub fn line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; its output (stdout then stderr, trimmed).
pub fn output(cmd: &mut Command) -> Result<(Output, String), CommandError> {
    let out = cmd.output().map_err(|error| CommandError::Spawn {
        line: line(cmd),
        error,
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_string();
    Ok((out, text))
}

/// Runs `cmd`; an exit status other than 0 is an error.
pub fn run(cmd: &mut Command) -> Result<String, CommandError> {
    let (out, text) = output(cmd)?;
    if out.status.success() {
        Ok(text)
    } else {
        Err(CommandError::Failed {
            line: line(cmd),
            status: out.status,
            output: if text.is_empty() {
                "no output".into()
            } else {
                text
            },
        })
    }
}

/// `name` on the PATH (or the usual system directories, which `sudo`'s
/// PATH may lack).
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
