//! The load generator runs optimised, whatever profile `cargo xtask` was
//! built in.
//!
//! `cargo xtask` is a dev build, whose dependencies are not optimised: its
//! thousands of TLS clients would run through unoptimised rustls, h2 and
//! tonic, and the generator, not the collector, would set the latencies.
//! So `scale` builds xtask and the binaries it starts in release with one
//! `cargo build` (one feature resolution: each dependency is compiled once
//! for both, and the collector measured is built from the same artifacts as
//! the generator) and re-executes itself from that build, which the
//! environment variable [`REEXEC`] marks. Only `cargo xtask scale` pays for
//! the release build: CI does not run it, and the dev profile (what
//! `cargo xtask test` and CI build) is left as it is.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::setup::{cargo, ensure_postgres, workspace_root};

/// Set (to the binaries' directory) in the environment of the release
/// xtask this module starts.
const REEXEC: &str = "TRANSMISSOR_SCALE_RELEASE_BIN_DIR";

/// The packages of the release build: the generator and what it starts.
const PACKAGES: [&str; 4] = [
    "xtask",
    "transmissor-agent",
    "transmissor-collector",
    "transmissor-plan",
];

/// In the optimised generator, returns the directory of the binaries it
/// starts (also in `TRANSMISSOR_BIN_DIR`, for the harness); otherwise builds
/// it and them in release and replaces this process with it (returns only
/// on failure).
pub fn optimised() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(REEXEC) {
        if cfg!(debug_assertions) {
            bail!("{REEXEC} is set but this xtask is not a release build");
        }
        return Ok(PathBuf::from(dir));
    }
    ensure_postgres()?;
    let mut cmd = cargo();
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "--release", "--bins"]);
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    eprintln!(
        "==> building the load generator (xtask) and transmissor-agent, \
         transmissor-collector and transmissor-plan (release)"
    );
    if !cmd.status().context("running cargo build")?.success() {
        bail!("cargo build --release failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bins = target.join("release");
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let err = std::process::Command::new(bins.join("xtask"))
        .args(&args)
        .env(REEXEC, &bins)
        .env("TRANSMISSOR_BIN_DIR", &bins)
        .exec();
    Err(err).context("starting the release xtask")
}
