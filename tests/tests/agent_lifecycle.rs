//! The agent's side of the certificate lifecycle, with the real binaries:
//! `transmissor-agent enroll` with a one-time token (and refusing an
//! impersonator whose CA key does not match the token's pin), renewal while
//! an upload is running, and an expired certificate that says how to
//! re-enroll.

use std::time::Duration;

use transmissor_tests::pg::wait_until;
use transmissor_tests::procs::Proc;
use transmissor_tests::stack::{Job, Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");

/// The whole table as a snapshot job.
fn full_copy() -> Job {
    Job::new("grande", "snapshot", "grande", "SELECT * FROM grande")
}

async fn stack(ca_extra: &str) -> anyhow::Result<Stack> {
    let s = Stack::with_options(
        &[A],
        StackOptions {
            enrollment: true,
            ca_extra: ca_extra.into(),
            ..Default::default()
        },
    )
    .await?;
    let m = s.munis[0].clone();
    s.source
        .connect(&m.db)
        .await?
        .batch_execute(
            "CREATE TABLE grande AS SELECT g::int8 AS id, md5(g::text) AS h FROM generate_series(1, 200000) g",
        )
        .await?;
    s.grant_reader(&m.db).await?;
    Ok(s)
}

/// `transmissor-agent enroll`, for a config file or (`--state-dir`) a directory.
fn enroll_cli(
    s: &Stack,
    flag: &str,
    path: &std::path::Path,
    token: &str,
) -> anyhow::Result<(bool, String)> {
    let out = std::process::Command::new(transmissor_tests::procs::bin("transmissor-agent")?)
        .args(["enroll", "--collector", &s.endpoint(), flag])
        .arg(path)
        .env("TRANSMISSOR_ENROLL_TOKEN", token)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(token), "the token was printed back");
    Ok((out.status.success(), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_refuses_a_wrong_pin_then_enrolls_and_transmits() -> anyhow::Result<()> {
    let mut s = stack("").await?;
    s.start_collector_in_process().await?;
    let m = s.munis[0].clone();
    let cfg = s.enrolled_agent_config(&m, &[full_copy()], "")?;
    let token = s.issue_token(A.0, Duration::from_secs(3600)).await?;

    // The same token with another CA's pin: the agent refuses the collector
    // before sending anything, so the token is not spent.
    let mut parts: Vec<&str> = token.split('.').collect();
    let other_pin = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA";
    parts[4] = other_pin;
    let (ok, text) = enroll_cli(&s, "--config", &cfg, &parts.join("."))?;
    assert!(!ok);
    assert!(
        text.contains("is not the one this token was issued for"),
        "{text}"
    );
    let id = token.split('.').nth(2).unwrap_or_default().to_string();
    let analytic = s.analytic_client().await?;
    let spent: bool = analytic
        .query_one(
            "SELECT consumed_at IS NOT NULL FROM transmissor.enrollment_tokens WHERE id = $1",
            &[&id],
        )
        .await?
        .get(0);
    assert!(!spent, "the token was spent on an impersonator");

    // The genuine token enrolls; the key stays here with owner-only permissions.
    let (ok, text) = enroll_cli(&s, "--config", &cfg, &token)?;
    assert!(ok, "{text}");
    assert!(
        text.contains("enrolled: agent") && text.contains(A.0),
        "{text}"
    );
    let key = s
        .dir
        .join(format!("agent-{}", m.ibge))
        .join("state/identity/agent.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key)?.permissions()) & 0o777;
    assert_eq!(mode, 0o600);
    // The same token again: refused by the collector as already used.
    let (ok, text) = enroll_cli(&s, "--state-dir", &s.dir.join("second-machine"), &token)?;
    assert!(!ok);
    assert!(text.contains("already"), "{text}");

    let report = s.run_agent_in_process(&cfg).await?;
    assert!(report.all_committed(), "{report}");
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_renews_during_a_running_upload() -> anyhow::Result<()> {
    // 20-second certificates: renewal falls 10.5 to 15.75 s after issuance,
    // while a ~25-second extraction and upload is in flight.
    let mut s = stack("agent_cert_lifetime = \"20s\"\nnot_before_backdate = \"1s\"").await?;
    s.start_collector().await?;
    let m = s.munis[0].clone();
    let slow = "SELECT id, h FROM grande WHERE id % 20000 <> 0 OR (SELECT true FROM pg_sleep(2.5 + 0 * id))";
    let cfg = s.enrolled_agent_config(
        &m,
        &[Job::new("grande", "snapshot", "grande", slow)],
        "[schedule]\nevery = \"1s\"\n\n[heartbeat]\ninterval = \"2s\"\n\n[spool]\nbatch_raw_bytes = \"16KiB\"\n",
    )?;
    s.enroll_agent(&m, &cfg).await?;
    let identity = s
        .dir
        .join(format!("agent-{}", m.ibge))
        .join("state/identity/agent.pem");
    let first = std::fs::read_to_string(&identity)?;
    let cfg_s = cfg.display().to_string();
    let mut agent = Proc::spawn(
        "transmissor-agent",
        ["run", "--config", &cfg_s],
        &[],
        &s.dir.join("agent-renew.log"),
    )?;

    let analytic = s.analytic_client().await?;
    let committed = wait_until(Duration::from_secs(120), || async {
        analytic
            .query_one(
                "SELECT count(*) FROM transmissor.transmissions WHERE state = 'committed'",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) >= 1)
            .unwrap_or(false)
    })
    .await;
    assert!(
        committed,
        "no transmission committed:\n{}",
        agent.log_text()
    );
    let status = agent.terminate(Duration::from_secs(30)).await?;
    assert!(status.success(), "{}", agent.log_text());

    let renewed: Vec<String> = analytic
        .query(
            "SELECT at::text FROM transmissor.audit_log WHERE action = 'agent.renewed' ORDER BY at",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!renewed.is_empty(), "no renewal:\n{}", agent.log_text());
    // A committed transmission was in flight when the certificate changed.
    let spanning: i64 = analytic
        .query_one(
            "SELECT count(*) FROM transmissor.transmissions t WHERE t.state = 'committed' AND EXISTS ( \
               SELECT 1 FROM transmissor.audit_log a WHERE a.action = 'agent.renewed' \
               AND a.at > t.started_at AND a.at < t.finished_at)",
            &[],
        )
        .await?
        .get(0);
    assert!(
        spanning >= 1,
        "no upload spanned a renewal; renewals at {renewed:?}:\n{}",
        agent.log_text()
    );
    let bad: i64 = analytic
        .query_one(
            "SELECT count(*) FROM transmissor.transmissions WHERE state IN ('failed', 'aborted')",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(bad, 0, "{}", agent.log_text());
    assert_ne!(
        std::fs::read_to_string(&identity)?,
        first,
        "the renewed certificate was stored"
    );
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_says_how_to_reenroll() -> anyhow::Result<()> {
    let mut s = stack("agent_cert_lifetime = \"1s\"\nnot_before_backdate = \"0s\"").await?;
    s.start_collector().await?;
    let m = s.munis[0].clone();
    let cfg = s.enrolled_agent_config(&m, &[full_copy()], "")?;
    s.enroll_agent(&m, &cfg).await?;
    let enrolled = std::time::Instant::now();
    // Let the one-second certificate run out.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            enrolled.elapsed() > Duration::from_millis(2100)
        })
        .await
    );
    let log = s.dir.join("agent-expired.log");
    let mut agent = s.spawn_agent(&cfg, "agent-expired.log")?;
    let status = agent.wait(Duration::from_secs(120)).await?;
    let text = std::fs::read_to_string(log)?;
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("expired") && text.contains("enroll the agent again"),
        "no clear expiry message:\n{text}"
    );
    // The collector logged the refused handshake at warn, with rustls' reason.
    let collector_log = std::fs::read_to_string(s.dir.join("collector.log"))?;
    assert!(
        collector_log.lines().any(|l| l.contains("WARN")
            && l.contains("tls handshake refused")
            && l.contains("client certificate expired")),
        "collector log:\n{collector_log}"
    );
    s.stop_collector().await?;
    Ok(())
}
