//! Issue #12, `transmissor-agent doctor` end to end: the real binary against
//! a real collector (enrolled with a one-time token), a real source
//! PostgreSQL with password authentication (SCRAM, and MD5 for one role) and
//! real mounts for the spool. Each scenario breaks one thing and checks that
//! the right item fails with its code and a fix line, in Portuguese and in
//! English, and that the exit code is the worst result:
//!
//! - database: a correct read-only role passes; a superuser, a role with
//!   INSERT on one table, and a role that writes through membership of
//!   another fail `database.write_access`; a wrong password fails
//!   `database.connect`; a missing table fails `database.read`; an MD5 role
//!   connects;
//! - identity and collector: an unreachable collector, a trust bundle from
//!   another CA (the pin does not match), an expired certificate;
//! - spool: a full filesystem (a 1 MiB tmpfs) and a read-only one;
//! - `db-role` prints the SQL for the plan's tables, and `--apply` through an
//!   administrator's connection makes a role the doctor passes;
//! - the collector shows the doctor's summary after the next heartbeat.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use transmissor_tests::pg::{ClusterOptions, wait_until};
use transmissor_tests::procs;
use transmissor_tests::stack::{Job, READER_PASSWORD, READER_ROLE, Stack, StackOptions};

const MUNI: (&str, &str) = ("2611606", "Recife");

/// The roles each scenario logs in as, all with the reader's password
/// (the harness writes it into each config's password file).
const PASSWORD: &str = READER_PASSWORD;

/// A stack whose source asks every role below (and the reader) for its
/// password: SCRAM, MD5 for `leitor_md5`.
async fn stack() -> Result<Stack> {
    let mut hba = vec!["host all leitor_md5 127.0.0.1/32 md5".to_string()];
    for role in [
        READER_ROLE,
        "admin_total",
        "com_insert",
        "neto",
        "leitor_novo",
    ] {
        hba.push(format!("host all {role} 127.0.0.1/32 scram-sha-256"));
    }
    let mut s = Stack::with_options(
        &[MUNI],
        StackOptions {
            enrollment: true,
            source_cluster: Some(ClusterOptions {
                hba_first: hba,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await?;
    s.start_collector().await?;
    let m = &s.munis[0];
    let db = s.source.connect(&m.db).await?;
    db.batch_execute(&format!(
        "CREATE TABLE tb_cidadao (co_seq bigint PRIMARY KEY, no_cidadao text);
         CREATE TABLE tb_atend (co_seq bigint PRIMARY KEY, co_cidadao bigint);
         INSERT INTO tb_cidadao VALUES (1, 'Fulana de Tal');
         INSERT INTO tb_atend VALUES (1, 1);
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         CREATE ROLE admin_total LOGIN SUPERUSER PASSWORD '{PASSWORD}';
         CREATE ROLE com_insert LOGIN PASSWORD '{PASSWORD}';
         CREATE ROLE escritor NOLOGIN;
         CREATE ROLE neto LOGIN PASSWORD '{PASSWORD}' IN ROLE escritor;
         SET password_encryption = 'md5';
         CREATE ROLE leitor_md5 LOGIN PASSWORD '{PASSWORD}';
         RESET password_encryption;"
    ))
    .await?;
    s.grant_reader(&m.db).await?;
    db.batch_execute(
        "GRANT SELECT ON tb_cidadao, tb_atend TO com_insert, neto, leitor_md5;
         GRANT INSERT ON tb_atend TO com_insert;
         GRANT INSERT, UPDATE ON tb_cidadao TO escritor;",
    )
    .await?;
    Ok(s)
}

fn jobs() -> Vec<Job> {
    vec![
        Job::new(
            "cidadaos",
            "snapshot",
            "cidadao",
            "SELECT co_seq, no_cidadao FROM tb_cidadao",
        ),
        Job::new(
            "atendimentos",
            "snapshot",
            "atend",
            "SELECT a.co_seq, a.co_cidadao FROM tb_atend a JOIN tb_cidadao c ON c.co_seq = a.co_cidadao",
        ),
    ]
}

/// An enrolled agent's config, with its spool directory made (as the
/// installer does).
async fn agent(s: &Stack, jobs: &[Job]) -> Result<PathBuf> {
    let m = &s.munis[0];
    let config = s.enrolled_agent_config(m, jobs, "")?;
    s.enroll_agent(m, &config).await?;
    std::fs::create_dir_all(state_dir(&config).join("spool"))?;
    Ok(config)
}

fn state_dir(config: &Path) -> PathBuf {
    config.with_file_name("state")
}

/// A copy of `config` named `name` with `(from, to)` replaced.
fn variant(config: &Path, name: &str, edits: &[(&str, &str)]) -> Result<PathBuf> {
    let mut text = std::fs::read_to_string(config)?;
    for (from, to) in edits {
        if !text.contains(from) {
            bail!("{from:?} not in {}", config.display());
        }
        text = text.replace(from, to);
    }
    let path = config.with_file_name(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn as_role(config: &Path, role: &str) -> Result<PathBuf> {
    variant(
        config,
        role,
        &[(
            &format!("user = \"{READER_ROLE}\""),
            &format!("user = \"{role}\""),
        )],
    )
}

/// One doctor run.
struct Run {
    code: i32,
    json: Value,
}

impl Run {
    /// The items of a check.
    fn items(&self, check: &str) -> Vec<&Value> {
        self.json["items"]
            .as_array()
            .map(|a| a.iter().filter(|i| i["check"] == check).collect())
            .unwrap_or_default()
    }

    /// The one item of `check` with `code`, or a failure showing them all.
    fn item(&self, check: &str, code: &str) -> Result<&Value> {
        self.items(check)
            .into_iter()
            .find(|i| i["code"] == code)
            .with_context(|| {
                format!(
                    "no {check} item with code {code}: {}",
                    serde_json::to_string_pretty(&self.json).unwrap_or_default()
                )
            })
    }

    /// `check` has only passing items.
    fn passes(&self, check: &str) -> Result<()> {
        let items = self.items(check);
        if items.is_empty() || items.iter().any(|i| i["outcome"] != "pass") {
            bail!(
                "{check} does not pass: {}",
                serde_json::to_string_pretty(&items).unwrap_or_default()
            );
        }
        Ok(())
    }
}

fn doctor(config: &Path, lang: &str, extra: &[&str]) -> Result<Run> {
    let out = Command::new(procs::bin("transmissor-agent")?)
        .args(["doctor", "--json", "--lang", lang, "--config"])
        .arg(config)
        .args(extra)
        .output()?;
    let json: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "doctor printed no JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let code = out.status.code().context("doctor killed")?;
    assert_eq!(json["exit_code"].as_i64(), Some(i64::from(code)));
    Ok(Run { code, json })
}

/// `check` fails with `code` in both languages, each with a fix containing
/// `pt_fix` and `en_fix`; exit code 2.
fn fails(config: &Path, check: &str, code: &str, pt_fix: &str, en_fix: &str) -> Result<Run> {
    let mut last = None;
    for (lang, fix) in [("pt", pt_fix), ("en", en_fix)] {
        let run = doctor(config, lang, &[])?;
        let item = run.item(check, code)?;
        assert_eq!(item["outcome"], "fail", "{item}");
        let text = item["fix"].as_str().unwrap_or_default();
        assert!(
            text.contains(fix),
            "{lang} fix of {check}/{code} lacks {fix:?}: {text}"
        );
        assert_eq!(run.code, 2, "a failure exits 2");
        last = Some(run);
    }
    Ok(last.expect("two runs"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_roles() -> Result<()> {
    let s = stack().await?;
    let config = agent(&s, &jobs()).await?;

    // The correct read-only role: every database item passes.
    let run = doctor(&config, "en", &[])?;
    for check in [
        "config",
        "database.connect",
        "database.version",
        "database.read",
        "database.write_access",
        "certificate",
        "collector.connect",
        "collector.clock",
        "spool",
    ] {
        run.passes(check)?;
    }
    assert_eq!(run.items("database.read").len(), 2, "one item per job");
    // Local jobs are a warning (development mode), so at best exit 1.
    run.item("plan", "local_jobs")?;
    assert_eq!(run.code, 1);

    // The same in Portuguese, as people read it.
    let out = Command::new(procs::bin("transmissor-agent")?)
        .args(["doctor", "--lang", "pt", "--config"])
        .arg(&config)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[OK]") && text.contains("Usuário do banco somente leitura"),
        "{text}"
    );
    assert!(text.contains("Resultado:"), "{text}");

    // MD5 authentication works too.
    doctor(&as_role(&config, "leitor_md5")?, "en", &[])?.passes("database.connect")?;

    let su = fails(
        &as_role(&config, "admin_total")?,
        "database.write_access",
        "can_write",
        "como administrador: ALTER ROLE \"admin_total\" NOSUPERUSER;",
        "as an administrator: ALTER ROLE \"admin_total\" NOSUPERUSER;",
    )?;
    assert!(
        su.json["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["message"]
                .as_str()
                .is_some_and(|m| m.contains("superuser")))),
        "{}",
        su.json
    );
    fails(
        &as_role(&config, "com_insert")?,
        "database.write_access",
        "can_write",
        "REVOKE INSERT ON public.tb_atend FROM \"com_insert\";",
        "REVOKE INSERT ON public.tb_atend FROM \"com_insert\";",
    )?;
    fails(
        &as_role(&config, "neto")?,
        "database.write_access",
        "can_write",
        "REVOKE \"escritor\" FROM \"neto\";",
        "REVOKE \"escritor\" FROM \"neto\";",
    )?;

    // A wrong password.
    let wrong = variant(
        &config,
        "wrong-password",
        &[("source.password", "wrong.password")],
    )?;
    let wrong_password = wrong.with_file_name("wrong.password");
    std::fs::write(&wrong_password, "not-the-password")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrong_password, std::fs::Permissions::from_mode(0o600))?;
    }
    let run = fails(
        &wrong,
        "database.connect",
        "auth_failed",
        "ALTER ROLE transmissor_leitura PASSWORD",
        "ALTER ROLE transmissor_leitura PASSWORD",
    )?;
    // Nothing else about the database can be known.
    assert_eq!(run.item("database.read", "not_checked")?["outcome"], "skip");

    // A job reading a table this PEC lacks.
    let config_missing = config.with_file_name("missing-table.toml");
    std::fs::write(
        &config_missing,
        format!(
            "{}\n[[jobs]]\nname = \"inexistente\"\nmode = \"snapshot\"\ntarget = \"x\"\n\
             query = \"SELECT * FROM tb_nao_existe\"\n",
            std::fs::read_to_string(&config)?
        ),
    )?;
    let run = fails(
        &config_missing,
        "database.read",
        "missing_table",
        "atualize o PEC",
        "update PEC",
    )?;
    assert_eq!(run.items("database.read").len(), 3);
    Ok(())
}

/// A certificate valid from 2020 to 2021, self-signed: expired.
fn expired_identity(identity: &Path) -> Result<()> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["agent".to_string()])?;
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key)?;
    std::fs::write(identity.join("agent.pem"), cert.pem())?;
    std::fs::write(identity.join("agent.key"), key.serialize_pem())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_collector_and_spool() -> Result<()> {
    let mut s = stack().await?;
    let config = agent(&s, &jobs()).await?;
    let state = state_dir(&config);
    let identity = state.join("identity");

    // Another CA in the trust bundle: the collector no longer matches the
    // authority pinned at enrollment.
    let saved = std::fs::read(identity.join("trust.pem"))?;
    std::fs::copy(&s.pki.ca_cert, identity.join("trust.pem"))?;
    let run = fails(
        &config,
        "collector.connect",
        "pin_mismatch",
        "proxy",
        "proxy",
    )?;
    run.item("collector.clock", "not_checked")?;
    std::fs::write(identity.join("trust.pem"), &saved)?;
    doctor(&config, "en", &[])?.passes("collector.connect")?;

    // An expired certificate (in a copy of the state: the identity stays).
    let other = s.dir.join("expired-state");
    copy_dir(&state, &other)?;
    expired_identity(&other.join("identity"))?;
    let expired = variant(
        &config,
        "expired",
        &[(
            &format!("state_dir = \"{}\"", state.display()),
            &format!("state_dir = \"{}\"", other.display()),
        )],
    )?;
    let run = fails(
        &expired,
        "certificate",
        "expired",
        "token novo",
        "new token",
    )?;
    run.item("collector.connect", "not_checked")?;

    // A full spool: a 1 MiB filesystem.
    let spool = state.join("spool");
    mount(&["-t", "tmpfs", "-o", "size=1m", "tmpfs"], &spool)?;
    let full = fails(&config, "spool", "full", "libere espaço", "free disk space");
    // Read-only.
    let ro = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&spool)
        .status()
        .map_err(anyhow::Error::from)
        .and_then(|st| {
            if st.success() {
                Ok(())
            } else {
                bail!("remount ro")
            }
        })
        .and_then(|()| fails(&config, "spool", "not_writable", "chown", "chown"));
    let _ = Command::new("umount").arg(&spool).status();
    full?;
    ro?;
    doctor(&config, "en", &[])?.passes("spool")?;

    // The collector stopped: unreachable, and the clock cannot be compared.
    s.stop_collector().await?;
    let run = fails(
        &config,
        "collector.connect",
        "unreachable",
        "firewall",
        "firewall",
    )?;
    run.item("collector.clock", "not_checked")?;
    Ok(())
}

fn mount(args: &[&str], at: &Path) -> Result<()> {
    let st = Command::new("mount").args(args).arg(at).status()?;
    if !st.success() {
        bail!(
            "mount {args:?} {} failed (the test needs root)",
            at.display()
        );
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_sql_and_the_collector_sees_the_summary() -> Result<()> {
    let s = stack().await?;
    let config = agent(&s, &jobs()).await?;
    let novo = as_role(&config, "leitor_novo")?;

    // Before: the role does not exist.
    fails(
        &novo,
        "database.connect",
        "auth_failed",
        "ALTER ROLE",
        "ALTER ROLE",
    )?;

    // The SQL for the plan's tables, as an administrator would run it.
    let out = Command::new(procs::bin("transmissor-agent")?)
        .args(["db-role", "--config"])
        .arg(&novo)
        .output()?;
    let sql = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{sql}");
    for line in [
        "CREATE ROLE \"leitor_novo\" LOGIN PASSWORD",
        "GRANT SELECT ON \"tb_atend\" TO \"leitor_novo\";",
        "GRANT SELECT ON \"tb_cidadao\" TO \"leitor_novo\";",
        "ALTER ROLE \"leitor_novo\" SET default_transaction_read_only = on;",
    ] {
        assert!(sql.contains(line), "{line:?} not in:\n{sql}");
    }
    assert!(!sql.contains(PASSWORD), "the printed SQL holds no password");

    // Applied once through the administrator's connection (the cluster's
    // superuser; its password is asked for, here from the environment).
    let out = Command::new(procs::bin("transmissor-agent")?)
        .args(["db-role", "--apply", "--admin-user", "postgres", "--config"])
        .arg(&novo)
        .env("TRANSMISSOR_ADMIN_PASSWORD", "unused-with-trust")
        .env("LANG", "pt_BR.UTF-8")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("criado ou ajustado"), "{text}");
    let run = doctor(&novo, "en", &[])?;
    for check in ["database.connect", "database.read", "database.write_access"] {
        run.passes(check)?;
    }

    // The summary reaches the collector with the next heartbeat (here the
    // one `run --now` sends).
    let failing = doctor(&as_role(&config, "com_insert")?, "en", &[])?;
    assert_eq!(failing.code, 2);
    let out = Command::new(procs::bin("transmissor-agent")?)
        .args(["run", "--now", "--config"])
        .arg(&config)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pool = s.collector_pool().await?;
    let query =
        "SELECT doctor FROM transmissor.agents WHERE revoked_at IS NULL AND doctor IS NOT NULL";
    let seen = wait_until(Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            sqlx::query(query)
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten()
                .is_some()
        }
    })
    .await;
    assert!(seen, "no doctor summary stored");
    let (stored,): (Value,) = sqlx::query_as(query).fetch_one(&pool).await?;
    assert_eq!(stored["worst"], "fail", "{stored}");
    let problems = stored["problems"].as_array().context("problems")?;
    assert!(
        problems
            .iter()
            .any(|p| p["check"] == "database.write_access" && p["code"] == "can_write"),
        "{stored}"
    );
    Ok(())
}
