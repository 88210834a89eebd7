//! `cargo xtask fuzz`: runs every `cargo fuzz` target of `fuzz/` (libFuzzer,
//! nightly) for a bounded time, one at a time, one job each, over the
//! corpora kept in the repository (`fuzz/corpus/<target>/`).
//!
//! Installs what it needs: `cargo-fuzz` from crates.io (`cargo install
//! --locked`) and, when `cargo +nightly` does not answer, the nightly
//! toolchain (`rustup toolchain install nightly --profile minimal`). Without
//! a nightly toolchain it fails, unless `--allow-missing-nightly` (then the
//! property tests of `cargo xtask test` are the only cover).
//!
//! New inputs a run finds go to a scratch corpus under `fuzz/target/`, so a
//! run leaves the repository untouched; `--update-corpus` merges those that
//! add coverage into `fuzz/corpus/<target>/` (commit them). A crash fails
//! the run, with the input's path under `fuzz/artifacts/<target>/` and the
//! command that reproduces it.

mod seeds;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The targets, each with its largest input (`-max_len`). `fuzz/Cargo.toml`
/// declares the same list; a target missing here fails the run.
const TARGETS: &[(&str, u32)] = &[
    ("batch_frame", 16 << 10),
    ("copy_text", 16 << 10),
    ("copy_binary", 8 << 10),
    ("spool_reader", 16 << 10),
    ("token", 512),
    ("csr", 8 << 10),
    ("agent_cert", 8 << 10),
    ("agent_config", 8 << 10),
    ("signed_plan", 16 << 10),
];

/// The cargo-fuzz release installed when `cargo fuzz` is missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// libFuzzer's memory limit: above the collector's 64 MiB batch cap and its
/// 128 MiB zstd window, far below what an unbounded allocation would take
/// (checked by libFuzzer's RSS thread; with `--sanitizer address`, one
/// allocation above it also fails at once, `-malloc_limit_mb`).
const RSS_LIMIT_MB: u32 = 2048;

/// Seconds a single input may take before it counts as a hang.
const UNIT_TIMEOUT_S: u32 = 10;

/// Environment a stable `cargo xtask` may carry that must not reach the
/// nightly build of `fuzz/` (its own target directory, its own flags).
const CLEARED_ENV: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTDOC",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
];

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds each target runs (libFuzzer's -max_total_time).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Run only these targets (all when none is given).
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// Merge the new inputs that add coverage into fuzz/corpus/<target>/.
    #[arg(long)]
    update_corpus: bool,
    /// When no nightly toolchain can be had, say so and exit 0.
    #[arg(long)]
    allow_missing_nightly: bool,
    /// Only (re)write the seed inputs `fuzz/corpus/<target>/seed-*` and exit.
    #[arg(long)]
    write_seeds: bool,
    /// libFuzzer's sanitizer: `none` (the default: the code under test has
    /// no `unsafe`, and the build is about five times cheaper, 5 min cold
    /// on 2 cores against 25) or `address` for a deeper local run.
    #[arg(long, default_value = "none", value_parser = ["none", "address"])]
    sanitizer: String,
    /// Build unoptimised: half the cold build (about 2.7 min on 2 cores
    /// against 5.2) for 2 to 20 times fewer runs per second; what CI uses
    /// for its short runs.
    #[arg(long)]
    dev: bool,
}

/// Build flags shared by `cargo fuzz build` and `cargo fuzz run` (the same,
/// or `run` rebuilds): release (or dev) with debug assertions, the chosen sanitizer,
/// 16 codegen units (cargo-fuzz's default of one makes the cold build of
/// sqlx, tonic and tokio-postgres several times slower).
static BUILD_FLAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

fn build_flags() -> &'static [String] {
    BUILD_FLAGS.get().map(Vec::as_slice).unwrap_or_default()
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let root = crate::setup::workspace_root();
    let fuzz_dir = root.join("fuzz");
    let targets = selected(&args.targets)?;
    if args.write_seeds {
        println!("==> writing seed inputs into fuzz/corpus/");
        return seeds::write(&fuzz_dir.join("corpus"));
    }

    if !ensure_nightly()? {
        let msg = "no nightly toolchain (`cargo +nightly` fails and `rustup toolchain install \
                   nightly --profile minimal` did not help): the fuzz targets cannot be built; \
                   the property tests of `cargo xtask test` still run";
        if args.allow_missing_nightly {
            eprintln!("==> SKIPPED: {msg}");
            return Ok(());
        }
        bail!("{msg} (pass --allow-missing-nightly to skip)");
    }
    ensure_cargo_fuzz()?;
    check_target_list(&root)?;

    let flags = [
        if args.dev { "-D" } else { "-O" },
        "-a",
        "--codegen-units",
        "16",
        "-s",
        args.sanitizer.as_str(),
    ];
    let _ = BUILD_FLAGS.set(flags.iter().map(|f| f.to_string()).collect());
    let started = Instant::now();
    println!(
        "==> cargo +nightly fuzz build ({}, debug assertions, sanitizer {})",
        if args.dev { "dev" } else { "release" },
        args.sanitizer
    );
    let status = cargo_fuzz(&root)
        .arg("build")
        .args(build_flags())
        .status()
        .context("running cargo +nightly fuzz build")?;
    if !status.success() {
        bail!("cargo +nightly fuzz build failed");
    }
    println!("    built in {:.0?}", started.elapsed());

    let scratch = fuzz_dir.join("target").join("xtask");
    let tmp = scratch.join("tmp");
    let mut failed = Vec::new();
    for &(name, max_len) in &targets {
        let new_inputs = scratch.join("corpus").join(name);
        let logs = scratch.join("logs");
        for d in [&new_inputs, &tmp, &logs] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let corpus = fuzz_dir.join("corpus").join(name);
        std::fs::create_dir_all(&corpus)?;
        let log = logs.join(format!("{name}.log"));
        println!("==> fuzz {name} for {} s (max_len {max_len})", args.seconds);
        let outcome = run_target(
            &root,
            name,
            max_len,
            args.seconds,
            &new_inputs,
            &corpus,
            &tmp,
            &log,
        )?;
        let _ = std::fs::remove_dir_all(&tmp);
        match outcome {
            Outcome::Clean(summary) => println!("    {summary}"),
            Outcome::Crashed { tail, artifact } => {
                eprintln!("{tail}");
                eprintln!("==> FUZZ FAILURE in {name} (full log: {})", log.display());
                match &artifact {
                    Some(a) => {
                        eprintln!("    crash input: {}", a.display());
                        eprintln!(
                            "    reproduce:   cargo +nightly fuzz run {name} {}",
                            a.display()
                        );
                        eprintln!(
                            "    minimise:    cargo +nightly fuzz tmin {name} {}",
                            a.display()
                        );
                    }
                    None => eprintln!("    (libFuzzer wrote no crash input; see the log)"),
                }
                failed.push(name);
                continue;
            }
        }
        if args.update_corpus {
            merge(&root, name, max_len, &corpus, &new_inputs)?;
        }
    }
    println!("==> fuzzing done in {:.0?}", started.elapsed());
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

fn selected(names: &[String]) -> Result<Vec<(&'static str, u32)>> {
    if names.is_empty() {
        return Ok(TARGETS.to_vec());
    }
    names
        .iter()
        .map(|n| {
            TARGETS
                .iter()
                .find(|(t, _)| t == n)
                .copied()
                .with_context(|| {
                    let all: Vec<_> = TARGETS.iter().map(|(t, _)| *t).collect();
                    format!("no fuzz target {n:?} (targets: {})", all.join(", "))
                })
        })
        .collect()
}

/// `cargo +nightly fuzz` in the workspace root, without the stable build's
/// target directory and flags.
fn cargo_fuzz(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").arg("fuzz").current_dir(root);
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    // `--dev` builds with fuzz/'s dev profile, whose default is full debug
    // info for every crate: line tables are enough for libFuzzer's stack
    // traces and cost far less to build. (Release builds: cargo-fuzz
    // already asks for line tables.)
    cmd.env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only");
    cmd
}

fn answers(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether `cargo +nightly` works, after trying to install it when not.
fn ensure_nightly() -> Result<bool> {
    let works = || answers(Command::new("cargo").args(["+nightly", "--version"]));
    if works() {
        return Ok(true);
    }
    eprintln!("==> no nightly toolchain: rustup toolchain install nightly --profile minimal");
    let installed = Command::new("rustup")
        .args(["toolchain", "install", "nightly", "--profile", "minimal"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    Ok(installed && works())
}

/// Installs cargo-fuzz from crates.io when `cargo fuzz` does not answer.
fn ensure_cargo_fuzz() -> Result<()> {
    if answers(Command::new("cargo").args(["+nightly", "fuzz", "--version"])) {
        return Ok(());
    }
    eprintln!(
        "==> installing cargo-fuzz {CARGO_FUZZ_VERSION}: cargo install cargo-fuzz --locked --debug"
    );
    let status = Command::new("cargo")
        // --debug: a debug build of this small command-line tool takes a
        // fraction of the release build's time and runs just as well.
        .args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--debug",
            "--version",
            CARGO_FUZZ_VERSION,
        ])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz --locked --debug --version {CARGO_FUZZ_VERSION} failed");
    }
    Ok(())
}

/// Fails when `fuzz/Cargo.toml` and [`TARGETS`] list different targets.
fn check_target_list(root: &Path) -> Result<()> {
    let out = cargo_fuzz(root)
        .arg("list")
        .output()
        .context("running cargo +nightly fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo +nightly fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let mut known: Vec<String> = TARGETS.iter().map(|(t, _)| t.to_string()).collect();
    listed.sort();
    known.sort();
    if listed != known {
        bail!(
            "fuzz/Cargo.toml declares the targets {listed:?}, xtask/src/fuzz.rs knows {known:?}: \
             add the new target (with its -max_len) to TARGETS"
        );
    }
    Ok(())
}

enum Outcome {
    Clean(String),
    Crashed {
        tail: String,
        artifact: Option<PathBuf>,
    },
}

#[allow(clippy::too_many_arguments)]
fn run_target(
    root: &Path,
    name: &str,
    max_len: u32,
    seconds: u64,
    new_inputs: &Path,
    corpus: &Path,
    tmp: &Path,
    log: &Path,
) -> Result<Outcome> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = cargo_fuzz(root)
        .args(["run", name])
        .args(build_flags())
        .arg(new_inputs)
        .arg(corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={max_len}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={UNIT_TIMEOUT_S}"))
        .arg("-print_final_stats=1")
        // Spool files of the spool_reader target go here; removed after.
        .env("TMPDIR", tmp)
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("running cargo +nightly fuzz run {name}"))?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if status.success() {
        return Ok(Outcome::Clean(summary(&text)));
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(60)..].join("\n");
    let artifact = text.lines().find_map(|l| {
        let (_, path) = l.split_once("Test unit written to ")?;
        let path = Path::new(path.trim());
        Some(if path.is_absolute() {
            path.to_path_buf()
        } else {
            root.join(path)
        })
    });
    Ok(Outcome::Crashed { tail, artifact })
}

/// `runs N (E/s), cov C, corpus K, peak rss R MB` from libFuzzer's final
/// statistics and its last status line.
fn summary(log: &str) -> String {
    let stat = |key: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{key}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"))
        .unwrap_or("");
    let field = |key: &str| {
        last.split_whitespace()
            .skip_while(|w| *w != key)
            .nth(1)
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "runs {} ({}/s), cov {}, features {}, corpus {}, new {}, peak rss {} MB",
        stat("number_of_executed_units"),
        stat("average_exec_per_sec"),
        field("cov:"),
        field("ft:"),
        field("corp:"),
        stat("new_units_added"),
        stat("peak_rss_mb"),
    )
}

/// Adds to `corpus` the inputs of `new_inputs` that add coverage.
fn merge(root: &Path, name: &str, max_len: u32, corpus: &Path, new_inputs: &Path) -> Result<()> {
    println!("    merging new coverage into {}", corpus.display());
    let status = cargo_fuzz(root)
        .args(["run", name])
        .args(build_flags())
        .arg(corpus)
        .arg(new_inputs)
        .args(["--", "-merge=1"])
        .arg(format!("-max_len={max_len}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running cargo +nightly fuzz run -merge=1")?;
    if !status.success() {
        bail!("merging the new inputs of {name} failed");
    }
    Ok(())
}
