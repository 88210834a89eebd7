//! The Linux installer (issue #12), into a temporary root laid out like a
//! Debian system (`--root`): `transmissor-agent install` enrolls for real
//! with a one-time token against a collector and produces exactly the
//! expected files, owners and modes; its unit passes `systemd-analyze
//! verify` (and `security --offline`); running it again changes nothing and
//! repairs what was broken; an upgrade (another binary's `install`) keeps
//! the identity, the plan state and the spool byte for byte; `uninstall
//! --keep-spool` leaves only the spool and `uninstall` nothing at all. The
//! `.deb` builds and lists the same layout with its maintainer scripts.
//!
//! What cannot be tested here: starting the unit (no systemd runs in the
//! test machine's container), so its sandbox is checked by systemd's own
//! analysers only.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use transmissor_agent::config::AgentConfig;
use transmissor_agent::identity::{self, IdentityPaths};
use transmissor_agent::install::{deb, layout, unit};
use transmissor_tests::installer::{
    added, changed, ids, line_for, make_root, run, run_ok, snapshot, summary_lines,
};
use transmissor_tests::procs::bin;
use transmissor_tests::stack::{READER_PASSWORD, READER_ROLE, Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");

fn plan_key() -> String {
    transmissor_plan::PublicKey::from(&transmissor_plan::SigningKey::from_bytes(&[7; 32]))
        .to_string()
}

/// What an install adds to the skeleton: path → `kind uid:gid mode`
/// (identity files are 0600 whatever the umask: the installer runs with 077).
fn expected_install(uid: u32, gid: u32, enabled_link: bool) -> BTreeMap<String, String> {
    let svc = format!("{uid}:{gid}");
    let mut e: BTreeMap<String, String> = [
        ("usr/local/bin/transmissor-agent", "f 0:0 755".to_string()),
        ("etc/transmissor", format!("d 0:{gid} 750")),
        ("etc/transmissor/agent.toml", format!("f 0:{gid} 640")),
        ("etc/transmissor/db-password", format!("f {svc} 600")),
        (
            "etc/systemd/system/transmissor-agent.service",
            "f 0:0 644".into(),
        ),
        ("var/lib/transmissor", format!("d {svc} 700")),
        ("var/lib/transmissor/identity", format!("d {svc} 700")),
        (
            "var/lib/transmissor/identity/agent.key",
            format!("f {svc} 600"),
        ),
        (
            "var/lib/transmissor/identity/agent.pem",
            format!("f {svc} 600"),
        ),
        (
            "var/lib/transmissor/identity/trust.pem",
            format!("f {svc} 600"),
        ),
        (
            "var/lib/transmissor/identity/agent.json",
            format!("f {svc} 600"),
        ),
        ("var/lib/transmissor/plan", format!("d {svc} 700")),
        ("var/lib/transmissor/spool", format!("d {svc} 700")),
        ("var/lib/transmissor/pseudonym.key", format!("f {svc} 600")),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_string(), m))
    .collect();
    if enabled_link {
        e.insert(
            "etc/systemd/system/multi-user.target.wants".into(),
            "d 0:0 755".into(),
        );
        e.insert(
            "etc/systemd/system/multi-user.target.wants/transmissor-agent.service".into(),
            "l 0:0 777".into(),
        );
    }
    e
}

/// The account files useradd rewrites (keeping their previous content as
/// `passwd-` etc., here the same as the skeleton's).
const ACCOUNTS: [&str; 4] = ["etc/group", "etc/gshadow", "etc/passwd", "etc/shadow"];

fn has(cmd: &str) -> bool {
    transmissor_agent::install::command::find(cmd).is_some()
}

/// Lines saying something changed.
fn changes(out: &str) -> Vec<(String, String)> {
    summary_lines(out)
        .into_iter()
        .filter(|(v, _)| !matches!(v.as_str(), "unchanged" | "skipped" | "absent"))
        .collect()
}

/// `systemd-analyze verify` and `security --offline` on a copy of `unit`
/// whose ExecStart runs `binary` (which exists here). `verify --root=DIR`
/// would resolve ExecStart inside the root, but also wants systemd's own
/// units there (sysinit.target…), which a bare root lacks.
fn analyze(unit_text: &str, exec_start: &str, binary: &Path, dir: &Path) -> Result<()> {
    if !has("systemd-analyze") {
        eprintln!("systemd-analyze not installed: unit not verified");
        return Ok(());
    }
    let copy = dir.join(layout::UNIT_NAME);
    ensure!(unit_text.contains(&format!("ExecStart={exec_start} ")));
    std::fs::write(
        &copy,
        unit_text.replace(
            &format!("ExecStart={exec_start} "),
            &format!("ExecStart={} ", binary.display()),
        ),
    )?;
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {}{err}",
        out.status
    );
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for transmissor-agent.service: "))
        .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no exposure level: {text}"))?;
    // 0 (fully confined) … 10; a plain service scores 9.6. What is left:
    // network access (needed), AF_UNIX, /proc details, other users' ids.
    ensure!(score <= 2.0, "exposure {score}:\n{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_repair_upgrade_uninstall() -> Result<()> {
    let mut s = Stack::with_options(
        &[A],
        StackOptions {
            enrollment: true,
            ..Default::default()
        },
    )
    .await?;
    s.start_collector_in_process().await?;
    let m = s.munis[0].clone();
    let exe = bin("transmissor-agent")?;
    let root_dir = make_root()?;
    let root = root_dir.path();
    let r = root.display().to_string();
    let work = tempfile::tempdir()?;
    let password_file = work.path().join("password");
    std::fs::write(&password_file, format!("{READER_PASSWORD}\n"))?;
    let pristine = snapshot(root)?;

    // (a) A fresh install, enrolled with a one-time token.
    let token = s.issue_token(A.0, Duration::from_secs(3600)).await?;
    let (endpoint, port, key) = (s.endpoint(), s.source.port.to_string(), plan_key());
    let pw = password_file.display().to_string();
    let flags = [
        "install",
        "--root",
        &r,
        "--collector",
        &endpoint,
        "--db-host",
        "127.0.0.1",
        "--db-port",
        &port,
        "--db-name",
        &m.db,
        "--db-user",
        READER_ROLE,
        "--db-password-file",
        &pw,
        "--plan-key",
        &key,
    ];
    let out = run_ok(&exe, &flags, &[("TRANSMISSOR_ENROLL_TOKEN", &token)]).await?;
    let lines = summary_lines(&out);
    ensure!(
        line_for(&lines, "identity in /var/lib/transmissor/identity")?.0 == "created",
        "{out}"
    );
    ensure!(out.contains(&format!("of municipality {}", A.0)), "{out}");
    ensure!(
        !out.contains(&token) && !out.contains(READER_PASSWORD),
        "{out}"
    );
    let installed = snapshot(root)?;
    let (uid, gid) = ids(root, "transmissor")?;
    ensure!(uid != 0 && gid != 0);
    let enabled = has("systemctl");
    assert_eq!(
        added(&pristine, &installed),
        expected_install(uid, gid, enabled)
    );
    let mut touched = changed(&pristine, &installed);
    touched.sort();
    assert_eq!(touched, ACCOUNTS, "only the account files change");
    if enabled {
        assert_eq!(
            std::fs::read_link(
                root.join("etc/systemd/system/multi-user.target.wants/transmissor-agent.service")
            )?,
            Path::new(layout::UNIT)
        );
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd"))?;
    ensure!(
        passwd.contains(&format!(
            "transmissor:x:{uid}:{gid}::/var/lib/transmissor:/usr/sbin/nologin\n"
        )),
        "{passwd}"
    );
    ensure!(
        std::fs::read_to_string(root.join("etc/group"))?.contains(&format!("transmissor:x:{gid}:"))
    );
    // The config, as the service will read it, and the password file.
    let cfg = AgentConfig::load(&root.join("etc/transmissor/agent.toml"))?;
    assert_eq!(cfg.collector.endpoint, endpoint);
    assert_eq!(cfg.agent.state_dir, Path::new("/var/lib/transmissor"));
    assert_eq!(cfg.agent.ibge.as_deref(), Some(A.0));
    assert_eq!(
        (
            cfg.source.host.as_str(),
            cfg.source.port,
            cfg.source.dbname.as_str()
        ),
        ("127.0.0.1", s.source.port, m.db.as_str())
    );
    assert_eq!(
        cfg.source.password_file.as_deref(),
        Some(Path::new("/etc/transmissor/db-password"))
    );
    assert_eq!(cfg.plan.keys.len(), 1);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/transmissor/db-password"))?,
        READER_PASSWORD
    );
    // The identity is real: the collector accepts it.
    let id_paths = IdentityPaths::in_state_dir(&root.join("var/lib/transmissor"));
    let id = identity::load(&id_paths)?;
    assert_eq!(id.info.as_ref().map(|i| i.ibge.as_str()), Some(A.0));
    let (code, msg) =
        transmissor_tests::identities::call_code(&s, (&id_paths.cert, &id_paths.key)).await?;
    assert_eq!(code, tonic::Code::NotFound, "authenticated: {msg}");
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/transmissor-agent"))?,
        std::fs::read(&exe)?
    );

    // (b) The unit: the layout's paths, and systemd's analysers.
    let unit_text =
        std::fs::read_to_string(root.join("etc/systemd/system/transmissor-agent.service"))?;
    assert_eq!(unit_text, unit::render(layout::BINARY, "transmissor"));
    ensure!(unit_text.contains(
        "\nExecStart=/usr/local/bin/transmissor-agent run --config /etc/transmissor/agent.toml\n"
    ));
    analyze(
        &unit_text,
        layout::BINARY,
        &root.join("usr/local/bin/transmissor-agent"),
        work.path(),
    )?;

    // (c) Again with the same flags (the spent token is not needed):
    // nothing changes, not even a modification time.
    let out = run_ok(&exe, &flags, &[("TRANSMISSOR_ENROLL_TOKEN", &token)]).await?;
    assert_eq!(changes(&out), vec![], "{out}");
    ensure!(out.contains("the token was not used"), "{out}");
    assert_eq!(snapshot(root)?, installed, "{out}");
    // Broken modes and owners are repaired, by a run with no flags at all.
    let set_mode = |p: &str, mode: u32| {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode))
    };
    set_mode("etc/transmissor/db-password", 0o644)?;
    set_mode("etc/transmissor/agent.toml", 0o666)?;
    set_mode("var/lib/transmissor/spool", 0o755)?;
    std::os::unix::fs::lchown(
        root.join("var/lib/transmissor/identity/agent.key"),
        Some(0),
        Some(0),
    )?;
    let out = run_ok(&exe, &["install", "--root", &r], &[]).await?;
    let lines = summary_lines(&out);
    for (what, why) in [
        ("/etc/transmissor/db-password", "mode 644 → 600"),
        ("/etc/transmissor/agent.toml", "mode 666 → 640"),
        ("/var/lib/transmissor/spool", "mode 755 → 700"),
        (
            "owner of everything under /var/lib/transmissor",
            "1 entry given",
        ),
    ] {
        let (verb, rest) = line_for(&lines, what)?;
        ensure!(verb == "repaired" && rest.contains(why), "{what}: {out}");
    }
    assert_eq!(changes(&out).len(), 4, "{out}");
    assert_eq!(snapshot(root)?, installed);
    // A setting the operator added survives; a flag changes only its value.
    let config = root.join("etc/transmissor/agent.toml");
    let text = std::fs::read_to_string(&config)?;
    std::fs::write(
        &config,
        format!(
            "{text}\n# local: metrics for our Prometheus\n[metrics]\nlisten = \"127.0.0.1:9464\"\n"
        ),
    )?;
    let out = run_ok(
        &exe,
        &["install", "--root", &r, "--db-host", "localhost"],
        &[],
    )
    .await?;
    ensure!(
        line_for(&summary_lines(&out), layout::CONFIG)?.0 == "updated",
        "{out}"
    );
    let cfg = AgentConfig::load(&config)?;
    assert_eq!(cfg.source.host, "localhost");
    assert_eq!(cfg.metrics.listen.map(|a| a.port()), Some(9464));
    ensure!(std::fs::read_to_string(&config)?.contains("# local: metrics"));

    // (d) An upgrade: another binary's install keeps identity, plan state
    // and spool byte for byte (and their owners, modes and times).
    let state = root.join("var/lib/transmissor");
    for (p, bytes) in [
        ("plan/accepted.json", &b"{\"version\":3}"[..]),
        ("spool/run-1/visitas/000001.batch", &b"zstd frame"[..]),
    ] {
        let f = state.join(p);
        std::fs::create_dir_all(f.parent().context("parent")?)?;
        std::fs::write(&f, bytes)?;
    }
    run_ok(&exe, &["install", "--root", &r], &[]).await?;
    let state_before = snapshot(&state)?;
    let config_before = snapshot(&root.join("etc/transmissor"))?;
    let new_exe = work.path().join("transmissor-agent");
    let mut bytes = std::fs::read(&exe)?;
    bytes.extend_from_slice(b"\0upgrade: a later build\0");
    std::fs::write(&new_exe, &bytes)?;
    std::fs::set_permissions(&new_exe, std::fs::Permissions::from_mode(0o755))?;
    let out = run_ok(&new_exe, &["install", "--root", &r], &[]).await?;
    let lines = summary_lines(&out);
    ensure!(line_for(&lines, layout::BINARY)?.0 == "updated", "{out}");
    assert_eq!(changes(&out).len(), 1, "only the binary: {out}");
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/transmissor-agent"))?,
        bytes
    );
    assert_eq!(snapshot(&state)?, state_before);
    assert_eq!(snapshot(&root.join("etc/transmissor"))?, config_before);
    ensure!(identity::load(&id_paths).is_ok());

    // (e) Uninstall keeping the spool: only the spool and the pseudonym
    // key remain (owned by a uid that no longer exists); the account files
    // are as before.
    let key_file = root.join("var/lib/transmissor/pseudonym.key");
    let key_before = std::fs::read(&key_file)?;
    let out = run_ok(&new_exe, &["uninstall", "--root", &r, "--keep-spool"], &[]).await?;
    let left = snapshot(root)?;
    let kept: Vec<String> = added(&pristine, &left).into_keys().collect();
    assert_eq!(
        kept,
        [
            "var/lib/transmissor",
            "var/lib/transmissor/pseudonym.key",
            "var/lib/transmissor/spool",
            "var/lib/transmissor/spool/run-1",
            "var/lib/transmissor/spool/run-1/visitas",
            "var/lib/transmissor/spool/run-1/visitas/000001.batch",
        ],
        "{out}"
    );
    for f in ACCOUNTS {
        assert_eq!(
            left[Path::new(f)].content,
            pristine[Path::new(f)].content,
            "{f}"
        );
    }
    // Installed again (a new identity needs a new token), the kept spool
    // is the new user's; then removed entirely: nothing is left.
    let token = s.issue_token(A.0, Duration::from_secs(3600)).await?;
    let out = run_ok(&exe, &flags, &[("TRANSMISSOR_ENROLL_TOKEN", &token)]).await?;
    let (uid2, _) = ids(root, "transmissor")?;
    let batch = snapshot(&state)?;
    assert_eq!(
        batch[Path::new("spool/run-1/visitas/000001.batch")].uid,
        uid2,
        "{out}"
    );
    // The kept pseudonym key is the reinstalled agent's: same pseudonyms.
    assert_eq!(std::fs::read(&key_file)?, key_before, "{out}");
    assert_eq!(batch[Path::new("pseudonym.key")].uid, uid2, "{out}");
    let out = run_ok(&exe, &["uninstall", "--root", &r], &[]).await?;
    let lines = summary_lines(&out);
    for what in [
        layout::BINARY,
        layout::UNIT,
        layout::CONFIG_DIR,
        layout::STATE_DIR,
        "user transmissor",
        "group transmissor",
    ] {
        ensure!(line_for(&lines, what)?.0 == "removed", "{what}: {out}");
    }
    let gone = snapshot(root)?;
    assert_eq!(
        gone.keys().collect::<Vec<_>>(),
        pristine.keys().collect::<Vec<_>>(),
        "{out}"
    );
    for (p, e) in &gone {
        let before = &pristine[p];
        assert_eq!(e.meta(), before.meta(), "{}", p.display());
        // useradd and userdel keep the previous version as `passwd-` etc.
        if !p.to_string_lossy().ends_with('-') {
            assert_eq!(e.content, before.content, "{}", p.display());
        }
    }
    // Uninstalling again finds nothing to do.
    let out = run_ok(&exe, &["uninstall", "--root", &r], &[]).await?;
    assert_eq!(changes(&out), vec![], "{out}");
    s.stop_collector().await?;
    Ok(())
}

/// Without a terminal, missing values are named all at once and nothing is
/// touched; a root with the .deb installed is left to apt.
#[tokio::test]
async fn refusals_change_nothing() -> Result<()> {
    let exe = bin("transmissor-agent")?;
    let root_dir = make_root()?;
    let root = root_dir.path();
    let r = root.display().to_string();
    let before = snapshot(root)?;
    let (ok, out) = run(&exe, &["install", "--root", &r], &[]).await?;
    ensure!(!ok, "{out}");
    for flag in ["--collector", "--plan-key", "--token", "--db-password-file"] {
        ensure!(out.contains(flag), "{flag}: {out}");
    }
    let (ok, out) = run(
        &exe,
        &[
            "install",
            "--root",
            &r,
            "--collector",
            "https://c.example:7443",
            "--plan-key",
            "ed25519:not-a-key",
        ],
        &[],
    )
    .await?;
    ensure!(!ok && out.contains("--plan-key"), "{out}");
    let (ok, out) = run(
        &exe,
        &[
            "install",
            "--root",
            &r,
            "--collector",
            "https://c.example:7443",
            "--plan-key",
            &plan_key(),
            "--token",
            "txe1.3550308.not.a.token",
        ],
        &[("TRANSMISSOR_DB_PASSWORD", "x")],
    )
    .await?;
    ensure!(!ok && out.contains("enrollment token"), "{out}");
    assert_eq!(snapshot(root)?, before);

    // Nothing installed: uninstall finds everything absent.
    let out = run_ok(&exe, &["uninstall", "--root", &r], &[]).await?;
    assert_eq!(changes(&out), vec![], "{out}");
    assert_eq!(snapshot(root)?, before);

    let list = root.join("var/lib/dpkg/info/transmissor-agent.list");
    std::fs::create_dir_all(list.parent().context("parent")?)?;
    std::fs::write(&list, "/usr/bin/transmissor-agent\n")?;
    let (ok, out) = run(&exe, &["uninstall", "--root", &r], &[]).await?;
    ensure!(!ok && out.contains("apt remove transmissor-agent"), "{out}");
    Ok(())
}

/// `dpkg-deb --contents` of `deb`: (mode string, owner, path).
fn contents(deb: &Path) -> Result<Vec<(String, String, String)>> {
    let out = std::process::Command::new("dpkg-deb")
        .arg("--contents")
        .arg(deb)
        .output()?;
    ensure!(out.status.success(), "{out:?}");
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[5].to_string())
        })
        .collect())
}

#[test]
fn deb_package_layout() -> Result<()> {
    let exe = bin("transmissor-agent")?;
    let out = tempfile::tempdir()?;
    let started = std::time::Instant::now();
    let deb_path = deb::build(&exe, out.path())?;
    eprintln!("deb built in {:?}", started.elapsed());
    assert_eq!(deb_path, out.path().join(deb::file_name()));
    ensure!(deb::file_name().starts_with("transmissor-agent_0."));
    let listed = contents(&deb_path)?;
    let dir = |p: &str| {
        (
            "drwxr-xr-x".to_string(),
            "root/root".to_string(),
            p.to_string(),
        )
    };
    let file = |mode: &str, p: &str| (mode.to_string(), "root/root".to_string(), p.to_string());
    let expected = vec![
        dir("./"),
        dir("./lib/"),
        dir("./lib/systemd/"),
        dir("./lib/systemd/system/"),
        file(
            "-rw-r--r--",
            "./lib/systemd/system/transmissor-agent.service",
        ),
        dir("./usr/"),
        dir("./usr/bin/"),
        file("-rwxr-xr-x", "./usr/bin/transmissor-agent"),
        dir("./usr/share/"),
        dir("./usr/share/doc/"),
        dir("./usr/share/doc/transmissor-agent/"),
        file("-rw-r--r--", "./usr/share/doc/transmissor-agent/copyright"),
    ];
    let (mut listed, mut expected) = (listed, expected);
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);

    let info = std::process::Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb_path)
        .output()?;
    let info = String::from_utf8(info.stdout)?;
    for needle in [
        "Package: transmissor-agent",
        "Architecture: amd64",
        "Depends: libc6 (>= 2.",
        "passwd",
        " postinst",
        " prerm",
        " postrm",
    ] {
        ensure!(info.contains(needle), "{needle}: {info}");
    }

    // The scripts are the repository's, and valid sh; the unit is the
    // install's but for ExecStart; the binary runs.
    let x = tempfile::tempdir()?;
    for (flag, to) in [("-e", "DEBIAN"), ("-x", "")] {
        let st = std::process::Command::new("dpkg-deb")
            .arg(flag)
            .arg(&deb_path)
            .arg(x.path().join(to))
            .status()?;
        ensure!(st.success());
    }
    for (name, text) in [
        ("postinst", deb::POSTINST),
        ("prerm", deb::PRERM),
        ("postrm", deb::POSTRM),
    ] {
        let p = x.path().join("DEBIAN").join(name);
        assert_eq!(std::fs::read_to_string(&p)?, text);
        assert_eq!(std::fs::metadata(&p)?.permissions().mode() & 0o777, 0o755);
        let st = std::process::Command::new("sh")
            .arg("-n")
            .arg(&p)
            .status()?;
        ensure!(st.success(), "{name} is not valid sh");
    }
    let postinst = deb::POSTINST;
    for path in [layout::CONFIG_DIR, layout::STATE_DIR] {
        ensure!(postinst.contains(path), "{path}");
    }
    let unit_text = std::fs::read_to_string(
        x.path()
            .join("lib/systemd/system/transmissor-agent.service"),
    )?;
    assert_eq!(
        unit_text,
        unit::render(layout::BINARY, "transmissor").replace(
            &format!("ExecStart={} ", layout::BINARY),
            &format!("ExecStart={} ", layout::PACKAGED_BINARY)
        )
    );
    let packaged: PathBuf = x.path().join("usr/bin/transmissor-agent");
    let v = std::process::Command::new(&packaged)
        .arg("--version")
        .output()?;
    ensure!(
        String::from_utf8_lossy(&v.stdout).starts_with("transmissor-agent "),
        "{v:?}"
    );
    analyze(&unit_text, layout::PACKAGED_BINARY, &packaged, x.path())?;
    Ok(())
}
