//! `cargo xtask windows`: the Windows agent, its zip and a smoke test.
//!
//! 1. The Rust target `x86_64-pc-windows-gnu` (rustup) and Debian's MinGW-w64
//!    cross compiler (`gcc-mingw-w64-x86-64`), installed when missing (apt
//!    only as root; otherwise the command is printed).
//! 2. `cargo build -p transmissor-agent --target x86_64-pc-windows-gnu`
//!    (`--release` for the zip municipalities get).
//! 3. `<target dir>/windows/transmissor-agent-windows-x86_64.zip`: the exe
//!    without its debug information (MinGW's `strip --strip-debug`: the
//!    release exe goes from ~100 MB to ~24 MB; function names stay for
//!    backtraces), `installer/windows/install.ps1` and
//!    `installer/windows/LEIA-ME.md`.
//! 4. Unless `--no-wine`, with Wine (Debian's `wine64`, installed when
//!    missing as root; otherwise the test is skipped with the command):
//!    `--version` names this version, `--help` exits 0, `doctor --help`
//!    exits 0 when the build has a `doctor` subcommand, `service` run from a
//!    console refuses with its message, and the service's life under Wine's
//!    service control manager: created, started, RUNNING, stopped, STOPPED
//!    with exit code 0, its daily log file saying it stopped on request;
//!    and the agent's unit tests (`cargo test -p transmissor-agent --lib`),
//!    built for Windows and run under Wine.
//!
//! Wine 8 (Debian 12) has no `bcryptprimitives.dll`, whose `ProcessPrng`
//! Rust's standard library calls since 1.78 (every Rust program needs it to
//! start): when Wine lacks it, the smoke test's directory gets a stand-in
//! built with MinGW from [`PROCESS_PRNG_SHIM`] (`RtlGenRandom`, which Wine
//! has). It is used only there and never shipped. The Wine prefix lives in
//! `~/.cache/transmissor/wine` (created once, ~10 s).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::setup::{cargo, run_apt, workspace_root};

const TARGET: &str = "x86_64-pc-windows-gnu";
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";
const MINGW_STRIP: &str = "x86_64-w64-mingw32-strip";
const MINGW_APT: &str = "gcc-mingw-w64-x86-64";
const WINE_APT: &str = "wine64";
pub const ZIP_NAME: &str = "transmissor-agent-windows-x86_64.zip";
const EXE: &str = "transmissor-agent.exe";
/// The service name install.ps1 registers.
const SERVICE: &str = "transmissor-agent";
/// Longest a single Wine command may take (the first one creates the prefix).
const WINE_TIMEOUT: Duration = Duration::from_secs(180);

/// `ProcessPrng` for Wine versions without `bcryptprimitives.dll`.
const PROCESS_PRNG_SHIM: &str = r#"
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
"#;

#[derive(clap::Args)]
pub struct WindowsArgs {
    /// Build with the release profile (the zip municipalities get); the
    /// default dev profile is enough for CI's smoke test.
    #[arg(long)]
    release: bool,
    /// Skip the smoke test under Wine.
    #[arg(long)]
    no_wine: bool,
}

pub fn run(args: WindowsArgs) -> Result<()> {
    let started = Instant::now();
    ensure_target()?;
    ensure_mingw()?;
    let t = Instant::now();
    let exe = build(args.release)?;
    let build_time = t.elapsed();

    let out_dir = target_dir().join("windows");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let zip_path = out_dir.join(ZIP_NAME);
    let t = Instant::now();
    let exe = strip(&exe, &out_dir.join(EXE))?;
    write_zip(&exe, &zip_path)?;
    let zip_time = t.elapsed();
    eprintln!(
        "==> {} ({})",
        zip_path.display(),
        human_size(std::fs::metadata(&zip_path)?.len())
    );

    let mut wine_time = None;
    if args.no_wine {
        eprintln!("==> smoke test under Wine skipped (--no-wine)");
    } else if let Some(wine) = ensure_wine()? {
        let tests = build_lib_tests()?;
        let t = Instant::now();
        smoke_test(&wine, &exe, &tests, &out_dir.join("smoke"))?;
        wine_time = Some(t.elapsed());
    }
    eprintln!(
        "==> windows: build {:.1?}, zip {:.1?}, wine {}, total {:.1?}",
        build_time,
        zip_time,
        wine_time.map_or("skipped".to_string(), |d| format!("{d:.1?}")),
        started.elapsed()
    );
    Ok(())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn ensure_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(o) if o.status.success() => {
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
            {
                return Ok(());
            }
        }
        _ => bail!(
            "rustup is needed to add the Rust target {TARGET}; with it: rustup target add {TARGET}"
        ),
    }
    eprintln!("==> adding the Rust target {TARGET}: rustup target add {TARGET}");
    if !Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .context("running rustup")?
        .success()
    {
        bail!("rustup target add {TARGET} failed");
    }
    Ok(())
}

fn ensure_mingw() -> Result<()> {
    let works = || {
        succeeds(Command::new(MINGW_GCC).arg("--version"))
            && succeeds(Command::new(MINGW_STRIP).arg("--version"))
    };
    if works() {
        return Ok(());
    }
    let cmd = format!("apt-get update && apt-get install -y --no-install-recommends {MINGW_APT}");
    if !is_root() {
        bail!(
            "the MinGW-w64 cross compiler ({MINGW_GCC}) is missing; install it with:\n  sudo sh -c '{cmd}'"
        );
    }
    eprintln!("==> installing MinGW-w64 from Debian's packages: {cmd}");
    if !run_apt(&cmd)? || !works() {
        bail!("installing MinGW-w64 failed; run by hand:\n  {cmd}");
    }
    Ok(())
}

fn build(release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "-p",
        "transmissor-agent",
        "--target",
        TARGET,
    ]);
    if release {
        cmd.arg("--release");
    }
    eprintln!(
        "==> building transmissor-agent for {TARGET}{}",
        if release { " (release)" } else { "" }
    );
    if !cmd.status().context("running cargo build")?.success() {
        bail!("cargo build --target {TARGET} failed");
    }
    let exe = target_dir()
        .join(TARGET)
        .join(if release { "release" } else { "debug" })
        .join(EXE);
    if !exe.is_file() {
        bail!("{} is missing after the build", exe.display());
    }
    Ok(exe)
}

/// The agent's unit tests for Windows (same dependencies as the dev build:
/// only the agent is compiled again); the test executable.
fn build_lib_tests() -> Result<PathBuf> {
    eprintln!("==> building the agent's unit tests for {TARGET}");
    let out = cargo()
        .current_dir(workspace_root())
        .args([
            "test",
            "--quiet",
            "-p",
            "transmissor-agent",
            "--lib",
            "--target",
            TARGET,
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test -p transmissor-agent --lib --target {TARGET} --no-run failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo test --no-run named no test executable")
}

/// `exe` without its debug information, as `out`.
fn strip(exe: &Path, out: &Path) -> Result<PathBuf> {
    let status = Command::new(MINGW_STRIP)
        .arg("--strip-debug")
        .arg("-o")
        .arg(out)
        .arg(exe)
        .status()
        .with_context(|| format!("running {MINGW_STRIP} (Debian's binutils-mingw-w64-x86-64)"))?;
    if !status.success() {
        bail!("{MINGW_STRIP} --strip-debug {} failed", exe.display());
    }
    Ok(out.to_path_buf())
}

/// The exe, install.ps1 and LEIA-ME.md at the zip's root.
fn write_zip(exe: &Path, zip_path: &Path) -> Result<()> {
    use zip::write::SimpleFileOptions;
    let installer = workspace_root().join("installer").join("windows");
    let entries = [
        (EXE, exe.to_path_buf()),
        ("install.ps1", installer.join("install.ps1")),
        ("LEIA-ME.md", installer.join("LEIA-ME.md")),
    ];
    let now = chrono::Local::now().naive_local();
    let stamp = {
        use chrono::{Datelike, Timelike};
        zip::DateTime::from_date_and_time(
            now.year().try_into().unwrap_or(1980),
            now.month() as u8,
            now.day() as u8,
            now.hour() as u8,
            now.minute() as u8,
            now.second() as u8,
        )
        .unwrap_or_default()
    };
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(stamp);
    let tmp = zip_path.with_extension("zip.tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    for (name, path) in &entries {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        zip.start_file(*name, options)?;
        zip.write_all(&bytes)?;
    }
    zip.finish()?.flush()?;
    std::fs::rename(&tmp, zip_path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), zip_path.display()))?;
    Ok(())
}

fn human_size(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Wine's launcher and its server.
struct Wine {
    wine: PathBuf,
    server: PathBuf,
    prefix: PathBuf,
}

impl Wine {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.wine);
        cmd.env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            // No Mono or Gecko installer dialogs while the prefix is made.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            // English messages from sc.exe, which the test reads.
            .env("LC_ALL", "C")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        cmd
    }

    /// Runs `wine args…` with a timeout; its output.
    fn run(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.command();
        cmd.args(args);
        run_with_timeout(cmd, WINE_TIMEOUT).with_context(|| format!("wine {}", args.join(" ")))
    }

    /// Ends this prefix's server and every process in it.
    fn stop(&self) {
        let _ = Command::new(&self.server)
            .arg("-k")
            .env("WINEPREFIX", &self.prefix)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn find_wine() -> Option<(PathBuf, PathBuf)> {
    let on_path = |name: &str| -> Option<PathBuf> {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    // Debian's `wine` puts a launcher on the PATH; `wine64` alone installs
    // it in /usr/lib/wine.
    let wine = on_path("wine")
        .or_else(|| on_path("wine64"))
        .or_else(|| Some(PathBuf::from("/usr/lib/wine/wine64")).filter(|p| p.is_file()))?;
    let server = on_path("wineserver")
        .or_else(|| Some(PathBuf::from("/usr/lib/wine/wineserver")).filter(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from("wineserver"));
    Some((wine, server))
}

/// Wine, installed from Debian's packages when missing and we are root;
/// `None` (the smoke test is skipped, saying so) otherwise.
fn ensure_wine() -> Result<Option<Wine>> {
    let found = match find_wine() {
        Some(f) => Some(f),
        None => {
            let cmd =
                format!("apt-get update && apt-get install -y --no-install-recommends {WINE_APT}");
            if !is_root() {
                eprintln!(
                    "==> Wine is missing: the smoke test is skipped; install it with:\n  sudo sh -c '{cmd}'"
                );
                return Ok(None);
            }
            eprintln!("==> installing Wine from Debian's packages: {cmd}");
            let t = Instant::now();
            if !run_apt(&cmd)? {
                bail!("installing Wine failed; run by hand:\n  {cmd}");
            }
            eprintln!("==> Wine installed in {:.1?}", t.elapsed());
            find_wine()
        }
    };
    let Some((wine, server)) = found else {
        bail!("Wine was installed but no wine or wine64 launcher was found");
    };
    let prefix = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("transmissor").join("wine"))
        .unwrap_or_else(|| target_dir().join("windows").join("wine"));
    std::fs::create_dir_all(prefix.parent().unwrap_or(&prefix))?;
    Ok(Some(Wine {
        wine,
        server,
        prefix,
    }))
}

/// Whether this Wine has its own `bcryptprimitives.dll`.
fn wine_has_process_prng() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/wine/x86_64-windows",
        "/usr/lib/wine/x86_64-windows",
        "/usr/lib64/wine/x86_64-windows",
        "/usr/local/lib/wine/x86_64-windows",
        "/opt/wine-stable/lib64/wine/x86_64-windows",
    ]
    .iter()
    .any(|d| Path::new(d).join("bcryptprimitives.dll").is_file())
}

fn build_shim(dir: &Path) -> Result<()> {
    let src = dir.join("bcryptprimitives.c");
    std::fs::write(&src, PROCESS_PRNG_SHIM)?;
    let status = Command::new(MINGW_GCC)
        .args(["-shared", "-O2", "-s", "-o"])
        .arg(dir.join("bcryptprimitives.dll"))
        .arg(&src)
        .arg("-ladvapi32")
        .status()
        .context("running the MinGW compiler")?;
    if !status.success() {
        bail!("building bcryptprimitives.dll for Wine failed");
    }
    Ok(())
}

/// `Z:\…` for an absolute Unix path (Wine maps Z: to /).
fn windows_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn smoke_test(wine: &Wine, exe: &Path, tests: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    if dir.to_string_lossy().contains(' ') {
        bail!(
            "the smoke test's directory {} has a space (sc.exe's command line): set CARGO_TARGET_DIR elsewhere",
            dir.display()
        );
    }
    let staged = dir.join(EXE);
    std::fs::copy(exe, &staged)?;
    let staged_tests = dir.join("agent-unit-tests.exe");
    std::fs::copy(tests, &staged_tests)?;
    if !wine_has_process_prng() {
        eprintln!(
            "==> this Wine has no bcryptprimitives.dll: the smoke test uses a stand-in (RtlGenRandom)"
        );
        build_shim(&dir)?;
    }
    let exe = windows_path(&staged);
    eprintln!(
        "==> smoke test under Wine ({}, prefix {})",
        wine.wine.display(),
        wine.prefix.display()
    );
    let result = smoke_steps(wine, &exe, &dir).and_then(|()| {
        let t = Instant::now();
        let run = wine.run(&[&windows_path(&staged_tests), "--test-threads", "2"])?;
        let out = text(&run);
        let summary = out
            .lines()
            .find(|l| l.starts_with("test result:"))
            .unwrap_or("no test result line")
            .to_string();
        if !run.status.success() || !summary.starts_with("test result: ok") {
            bail!("the agent's unit tests under Wine: {}\n{out}", run.status);
        }
        eprintln!("    agent unit tests: {summary} ({:.1?})", t.elapsed());
        Ok(())
    });
    wine.stop();
    result
}

fn smoke_steps(wine: &Wine, exe: &str, dir: &Path) -> Result<()> {
    let t = Instant::now();
    let version = wine.run(&[exe, "--version"])?;
    let expected = format!("transmissor-agent {}", env!("CARGO_PKG_VERSION"));
    if !version.status.success() || !text(&version).contains(&expected) {
        bail!(
            "transmissor-agent.exe --version under Wine: {} (expected {expected:?})\n{}",
            version.status,
            text(&version)
        );
    }
    eprintln!("    --version: {expected} ({:.1?})", t.elapsed());

    let help = wine.run(&[exe, "--help"])?;
    if !help.status.success() {
        bail!(
            "transmissor-agent.exe --help: {}\n{}",
            help.status,
            text(&help)
        );
    }
    eprintln!("    --help: ok");
    if has_subcommand(&String::from_utf8_lossy(&help.stdout), "doctor") {
        let doctor = wine.run(&[exe, "doctor", "--help"])?;
        if !doctor.status.success() {
            bail!(
                "transmissor-agent.exe doctor --help: {}\n{}",
                doctor.status,
                text(&doctor)
            );
        }
        eprintln!("    doctor --help: ok");
    } else {
        eprintln!("    doctor --help: skipped (this build has no doctor subcommand)");
    }

    let console = wine.run(&[exe, "service", "--config", "Z:\\nowhere\\agent.toml"])?;
    if console.status.success()
        || !text(&console).contains("started by the Windows service control manager")
    {
        bail!(
            "`service` run from a console should refuse: {}\n{}",
            console.status,
            text(&console)
        );
    }
    eprintln!("    service from a console: refused, as it should");

    let t = Instant::now();
    service_life(wine, exe, &dir.join("service"))?;
    eprintln!(
        "    service: started, running, stopped with exit code 0 ({:.1?})",
        t.elapsed()
    );
    Ok(())
}

/// Whether clap's `--help` lists `name` under "Commands:".
fn has_subcommand(help: &str, name: &str) -> bool {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// A local-mode agent with a self-signed identity, a job scheduled at night
/// and a collector nobody listens for: it runs idle until stopped.
fn write_service_files(dir: &Path) -> Result<()> {
    let identity = dir.join("state").join("identity");
    std::fs::create_dir_all(&identity)?;
    let cert = rcgen::generate_simple_self_signed(vec!["transmissor-agent-smoke".to_string()])
        .context("generating the smoke test's identity")?;
    std::fs::write(identity.join("agent.key"), cert.signing_key.serialize_pem())?;
    std::fs::write(identity.join("agent.pem"), cert.cert.pem())?;
    std::fs::write(identity.join("trust.pem"), cert.cert.pem())?;
    let config = format!(
        r#"version = 1
[agent]
state_dir = '{state}'
[source]
host = "127.0.0.1"
port = 9
dbname = "esus"
user = "leitura"
[collector]
endpoint = "https://127.0.0.1:9"
[schedule]
daily_at = ["03:00"]
[[jobs]]
name = "smoke"
mode = "snapshot"
target = "smoke"
query = "SELECT 1 AS x"
"#,
        state = windows_path(&dir.join("state"))
    );
    std::fs::write(dir.join("agent.toml"), config)?;
    Ok(())
}

fn service_life(wine: &Wine, exe: &str, dir: &Path) -> Result<()> {
    write_service_files(dir)?;
    let logs = dir.join("logs");
    let bin_path = format!(
        "{exe} service --config {} --log-dir {}",
        windows_path(&dir.join("agent.toml")),
        windows_path(&logs)
    );
    // Wine ends the processes it started as services once no ordinary
    // process is left: a console waiting on its input keeps one.
    let mut keep_alive = wine
        .command()
        .args(["cmd", "/c", "pause"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting Wine's console")?;
    let result = (|| -> Result<()> {
        let _ = wine.run(&["sc", "delete", SERVICE]);
        let created = wine.run(&["sc", "create", SERVICE, "binPath=", &bin_path])?;
        if !created.status.success() {
            bail!(
                "sc create under Wine: {}\n{}",
                created.status,
                text(&created)
            );
        }
        let started = wine.run(&["sc", "start", SERVICE])?;
        if !started.status.success() {
            bail!(
                "sc start under Wine: {}\n{}",
                started.status,
                text(&started)
            );
        }
        wait_for_state(wine, "RUNNING", &logs)?;
        let stopped = wine.run(&["sc", "stop", SERVICE])?;
        if !stopped.status.success() {
            bail!("sc stop under Wine: {}\n{}", stopped.status, text(&stopped));
        }
        let query = wait_for_state(wine, "STOPPED", &logs)?;
        let exit_code_line = query
            .lines()
            .find(|l| l.contains("WIN32_EXIT_CODE"))
            .unwrap_or_default();
        if !exit_code_line.contains(": 0 ") {
            bail!(
                "the service stopped with an error:\n{query}\n{}",
                log_text(&logs)
            );
        }
        let log = log_text(&logs);
        for expected in [
            "service starting",
            "stop requested",
            "service stopped exit_code=0",
        ] {
            if !log.contains(expected) {
                bail!("the service's log has no {expected:?}:\n{log}");
            }
        }
        Ok(())
    })();
    let _ = wine.run(&["sc", "delete", SERVICE]);
    drop(keep_alive.stdin.take());
    if wait_with_timeout(&mut keep_alive, Duration::from_secs(10)).is_none() {
        let _ = keep_alive.kill();
        let _ = keep_alive.wait();
    }
    result
}

/// Polls `sc query` until the service is in `state` (a minute at most).
fn wait_for_state(wine: &Wine, state: &str, logs: &Path) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let query = text(&wine.run(&["sc", "query", SERVICE])?);
        let current = query
            .lines()
            .find(|l| l.trim_start().starts_with("STATE"))
            .unwrap_or_default()
            .to_string();
        if current.contains(state) {
            return Ok(query);
        }
        if Instant::now() > deadline {
            bail!(
                "the service is not {state} after a minute:\n{query}\n{}",
                log_text(logs)
            );
        }
        // Stopped while we wait for it to run: it failed to start.
        if state == "RUNNING" && current.contains("STOPPED") {
            bail!(
                "the service stopped instead of running:\n{query}\n{}",
                log_text(logs)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every log file of the service, oldest first.
fn log_text(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect::<Vec<_>>()
        .join("")
}

/// Waits for `child` to exit, at most `timeout` (the OS's own wait with a
/// timeout, through `wait-timeout`); None when it is still running.
fn wait_with_timeout(child: &mut std::process::Child, timeout: Duration) -> Option<()> {
    use wait_timeout::ChildExt;
    child.wait_timeout(timeout).ok().flatten().map(|_| ())
}

/// Runs `cmd` with its output in temporary files (no pipe a lingering
/// wineserver could hold open), killing it after `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output> {
    let stdout = tempfile::tempfile()?;
    let stderr = tempfile::tempfile()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .spawn()?;
    if wait_with_timeout(&mut child, timeout).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        bail!("timed out after {timeout:?}");
    }
    let status = child.wait()?;
    let read = |mut f: std::fs::File| -> Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0))?;
        f.read_to_end(&mut v)?;
        Ok(v)
    };
    Ok(Output {
        status,
        stdout: read(stdout)?,
        stderr: read(stderr)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_subcommand_in_clap_help() {
        let help = "Municipal agent of transmissor

Usage: transmissor-agent.exe [OPTIONS] <COMMAND>

Commands:
  enroll  Enroll this agent with a one-time token
  doctor  Check everything the agent needs, in Portuguese or English
  help    Print this message or the help of the given subcommand(s)

Options:
      --log-format <LOG_FORMAT>  Log format: text or json (doctor reads it too)
";
        assert!(has_subcommand(help, "doctor"));
        assert!(has_subcommand(help, "enroll"));
        let without = help.replace(
            "  doctor  Check everything the agent needs, in Portuguese or English\n",
            "",
        );
        assert!(!has_subcommand(&without, "doctor"));
        assert!(!has_subcommand(help, "Check"));
    }

    #[test]
    fn windows_paths_go_through_drive_z() {
        assert_eq!(
            windows_path(Path::new("/work/target/windows/smoke/agent.toml")),
            r"Z:\work\target\windows\smoke\agent.toml"
        );
    }
}
