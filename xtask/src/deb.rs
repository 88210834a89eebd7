//! `cargo xtask deb`: the agent's `.deb`, `<target>/debian/
//! transmissor-agent_<version>_<arch>.deb`, from the release binary (built
//! here) or `--binary`. The package itself (layout, unit, maintainer
//! scripts) is `transmissor_agent::install::deb`, which the installer test
//! builds too; `dpkg-deb` does the archiving (no cargo-deb to install).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::setup::{cargo, workspace_root};

#[derive(clap::Args)]
pub struct DebArgs {
    /// Package this binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Where the package goes [default: <target>/debian].
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

pub fn run(args: DebArgs) -> Result<()> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let binary = match args.binary {
        Some(b) => b,
        None => {
            eprintln!("==> building transmissor-agent (release)");
            let status = cargo()
                .current_dir(workspace_root())
                .args([
                    "build",
                    "--quiet",
                    "--release",
                    "-p",
                    "transmissor-agent",
                    "--bin",
                    "transmissor-agent",
                ])
                .status()
                .context("running cargo build")?;
            if !status.success() {
                bail!("cargo build failed");
            }
            target.join("release/transmissor-agent")
        }
    };
    let out_dir = args.out_dir.unwrap_or_else(|| target.join("debian"));
    let started = Instant::now();
    let deb = transmissor_agent::install::deb::build(&binary, &out_dir)?;
    eprintln!(
        "==> packaged in {:.1} s; its layout: dpkg-deb --contents {}",
        started.elapsed().as_secs_f64(),
        deb.display()
    );
    println!("{}", deb.display());
    Ok(())
}
