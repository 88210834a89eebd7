//! What the demo and the tests need on this machine: PostgreSQL's server
//! binaries (installed from Debian's packages when missing and we are root;
//! otherwise the exact command is printed) and the project's binaries.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

const APT_PACKAGES: &[&str] = &["postgresql", "postgresql-contrib"];

pub fn ensure_postgres() -> Result<()> {
    if transmissor_tests::pg::find_bin_dir().is_some() {
        return Ok(());
    }
    let cmd = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        APT_PACKAGES.join(" ")
    );
    if !nix::unistd::geteuid().is_root() {
        bail!("PostgreSQL server binaries are missing; install them with:\n  sudo sh -c '{cmd}'");
    }
    eprintln!("==> installing PostgreSQL from Debian's packages: {cmd}");
    let status = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() || transmissor_tests::pg::find_bin_dir().is_none() {
        bail!("installing PostgreSQL failed; run by hand:\n  {cmd}");
    }
    Ok(())
}

/// Builds the agent and collector binaries; returns their directory.
pub fn build_bins(release: bool) -> Result<PathBuf> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "-p",
        "transmissor-agent",
        "-p",
        "transmissor-collector",
        "--bins",
    ]);
    if release {
        cmd.arg("--release");
    }
    eprintln!(
        "==> building transmissor-agent and transmissor-collector{}",
        if release { " (release)" } else { "" }
    );
    if !cmd.status().context("running cargo build")?.success() {
        bail!("cargo build failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    Ok(target.join(if release { "release" } else { "debug" }))
}

/// Ensures PostgreSQL, builds the binaries, points the harness at them
/// (`TRANSMISSOR_BIN_DIR`) and runs `task` on a fresh tokio runtime.
pub fn with_binaries<F, Fut>(release: bool, task: F) -> Result<()>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    ensure_postgres()?;
    let bins = build_bins(release)?;
    set_bin_dir(&bins);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(task(bins))
}

#[allow(unsafe_code)]
fn set_bin_dir(dir: &std::path::Path) {
    // SAFETY: called before the runtime starts, while no other thread runs.
    unsafe { std::env::set_var("TRANSMISSOR_BIN_DIR", dir) };
}

pub fn run_tests(extra: &[String]) -> Result<()> {
    ensure_postgres()?;
    let bins = build_bins(false)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let nextest = Command::new(&cargo)
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .env("TRANSMISSOR_BIN_DIR", &bins);
    if nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(extra);
    eprintln!(
        "==> running the test suite ({})",
        if nextest {
            "cargo nextest"
        } else {
            "cargo test"
        }
    );
    let status = cmd.status().context("running the tests")?;
    if !status.success() {
        bail!("tests failed");
    }
    Ok(())
}
