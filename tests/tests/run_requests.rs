//! Operators' run requests (retries), end to end with the real binaries: a
//! running agent in central mode, the collector's JSON API with operators
//! logged in, and its CLI.
//!
//! - A request over the API reaches the running agent in a heartbeat
//!   answer and runs the plan's job (or every job) once; viewers may not
//!   ask, unknown jobs are refused; the CLI asks the same way; the running
//!   agent's own metrics count the runs; an agent run by cron takes none;
//!   a daemon without a plan yet runs a request that comes with its first
//!   plan.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use transmissor_tests::pec::Scale;
use transmissor_tests::pg::wait_until;
use transmissor_tests::plans::{
    PlanJob, PlanKey, count, plan_toml, run_now, spawn_service, wait_log,
};
use transmissor_tests::procs::bin;
use transmissor_tests::stack::{Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");
const LATER: &str = "2099-01-01T00:00:00Z";

/// An operator asks a running agent to run now (a retry) through the JSON
/// API: the request rides a heartbeat answer, the agent runs the plan's job
/// once (not again when the answer repeats it), reports it taken, and the
/// request, its taker and the operator's name are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_run_request_reaches_the_agent_and_runs_once() -> Result<()> {
    use transmissor_tests::http::request;
    use transmissor_tests::operators::{add_operator, login, wait_http};

    let http_port = transmissor_tests::pg::free_port();
    let plan_keys = tempfile::tempdir()?;
    let k1 = PlanKey::generate(plan_keys.path(), "k1")?;
    let mut stack = Stack::with_options(
        &[A],
        StackOptions {
            plans_required: true,
            plans_extra: transmissor_tests::plans::collector_plan_keys(&[&k1], None),
            collector_extra_toml: format!("\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n"),
            ..Default::default()
        },
    )
    .await?;
    let m = stack.munis[0].clone();
    stack.load_pec(&m, 1, &Scale::tiny()).await?;
    stack.start_collector().await?;
    let http: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
    let trust = stack.server_trust.clone();
    wait_http(http).await?;
    let dir = stack.dir.clone();
    // Yearly jobs: nothing is due while the test runs.
    let yearly = |name, target, sql| PlanJob {
        name,
        target,
        mode: "snapshot",
        sql,
        cron: "0 3 1 1 *",
        pec: None,
    };
    let jobs = [
        yearly(
            "equipes",
            "plan_equipes",
            "SELECT co_seq_dim_equipe, nu_ine, no_equipe, st_registro_valido, ds_filtro FROM tb_dim_equipe",
        ),
        yearly(
            "cbo",
            "plan_cbo",
            "SELECT co_seq_dim_cbo, nu_cbo, no_cbo, st_registro_valido, ds_filtro FROM tb_dim_cbo",
        ),
    ];
    let v1 = k1.sign_plan(&dir, "v1", &plan_toml(1, "\"all\"", LATER, "yearly", &jobs))?;
    stack.publish_plan("v1", &v1)?;
    stack.wait_served(&m, &v1).await?;
    let keys = format!("\"{}\"", k1.public);
    let agent_metrics: std::net::SocketAddr =
        format!("127.0.0.1:{}", transmissor_tests::pg::free_port()).parse()?;
    let cfg = stack.agent_config(
        &m,
        &[],
        &format!(
            "[plan]\nkeys = [{keys}]\n\n[heartbeat]\ninterval = \"1s\"\n\n[metrics]\nlisten = \"{agent_metrics}\"\n\n[schedule]\nrun_now_min_interval = \"0s\"\n"
        ),
    )?;
    let mut daemon = spawn_service(&cfg, &dir.join("daemon.log"))?;
    wait_log(&daemon, "schedule follows the new plan").await?;
    assert!(
        !daemon.log_text().contains("catching up"),
        "{}",
        daemon.log_text()
    );

    add_operator(&stack, "ana", "viewer", "senha-da-ana-123")?;
    add_operator(&stack, "bruno", "operator", "senha-do-bruno-123")?;
    let trust_ref = &trust;
    let session = |name: &'static str, password: &'static str| async move {
        let trust = trust_ref;
        let cookie = login(http, trust, name, password)
            .await?
            .context("logs in")?;
        let me = request(
            http,
            "GET",
            "/api/v1/me",
            &[("Cookie", &cookie)],
            "",
            Some(trust),
        )
        .await?;
        let csrf = me
            .body
            .split("\"csrf_token\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_string();
        anyhow::Ok((cookie, csrf))
    };
    let path = format!("/api/v1/municipalities/{}/run-requests", m.ibge);
    let ask = |who: (String, String), body: &'static str| {
        let (path, trust) = (path.clone(), stack.server_trust.clone());
        async move {
            request(
                http,
                "POST",
                &path,
                &[
                    ("Cookie", &who.0),
                    ("X-CSRF-Token", &who.1),
                    ("Content-Type", "application/json"),
                ],
                body,
                Some(&trust),
            )
            .await
        }
    };
    // A viewer may not ask.
    let r = ask(session("ana", "senha-da-ana-123").await?, "{}").await?;
    assert_eq!(r.status, 403, "{}", r.body);
    let bruno = session("bruno", "senha-do-bruno-123").await?;
    // A job the plan does not define is refused, naming the plan's jobs.
    let r = ask(bruno.clone(), "{\"job\": \"nao_existe\"}").await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("nao_existe") && r.body.contains("equipes, cbo"),
        "{}",
        r.body
    );
    let committed = |job: &'static str| {
        let stack = &stack;
        async move {
            count(
                stack,
                &format!(
                    "SELECT count(*) FROM transmissor.transmissions \
                     WHERE state = 'committed' AND job = '{job}'"
                ),
            )
            .await
            .unwrap_or(-1)
        }
    };
    assert_eq!((committed("equipes").await, committed("cbo").await), (0, 0));
    // Waits until each job has committed this many times.
    let runs = |want: &'static [(&'static str, i64)]| async move {
        wait_until(Duration::from_secs(60), || async {
            for (job, n) in want {
                if committed(job).await != *n {
                    return false;
                }
            }
            true
        })
        .await
    };

    // One job.
    let r = ask(bruno.clone(), "{\"job\": \"equipes\"}").await?;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.contains("\"status\":\"pending\""), "{}", r.body);
    assert!(
        runs(&[("equipes", 1)]).await,
        "the requested run never committed:\n{}",
        daemon.log_text()
    );
    // Taken by this agent, recorded with the operator's name.
    let c = stack.analytic_client().await?;
    let taken = || {
        let c = &c;
        async move {
            c.query_one(
                "SELECT count(*) FILTER (WHERE taken_at IS NOT NULL AND taken_by = $1), count(*) \
                 FROM transmissor.run_requests",
                &[&m.agent_id],
            )
            .await
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .unwrap_or((-1, -1))
        }
    };
    assert!(
        wait_until(Duration::from_secs(30), || async {
            taken().await == (1, 1)
        })
        .await,
        "{:?}",
        taken().await
    );
    let actor: String = c
        .query_one(
            "SELECT actor FROM transmissor.audit_log WHERE action = 'run.requested'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(actor, "operator:bruno (web)");

    // Every job: both run, and nothing runs again once the requests are
    // taken (two more heartbeats after it; an answer repeating a request is
    // covered by the agent's unit test).
    let r = ask(bruno.clone(), "{}").await?;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(
        runs(&[("cbo", 1), ("equipes", 2)]).await,
        "the run of every job never committed:\n{}",
        daemon.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(30), || async {
            taken().await == (2, 2)
        })
        .await,
        "{:?}",
        taken().await
    );
    let beats_after = |since: f64| {
        let c = &c;
        async move {
            c.query_one(
                "SELECT heartbeat_at > to_timestamp($2) + interval '2 seconds' \
                 FROM transmissor.agents WHERE id = $1",
                &[&m.agent_id, &since],
            )
            .await
            .is_ok_and(|r| r.get::<_, Option<bool>>(0) == Some(true))
        }
    };
    let now: f64 = c
        .query_one("SELECT extract(epoch FROM now())::float8", &[])
        .await?
        .get(0);
    assert!(wait_until(Duration::from_secs(30), || beats_after(now)).await);
    assert_eq!((committed("equipes").await, committed("cbo").await), (2, 1));
    assert_eq!(
        daemon
            .log_text()
            .matches("run requested by an operator")
            .count(),
        2,
        "{}",
        daemon.log_text()
    );
    // The API lists both, taken.
    let r = request(
        http,
        "GET",
        &path,
        &[("Cookie", &bruno.0)],
        "",
        Some(&trust),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body.matches("\"status\":\"taken\"").count(),
        2,
        "{}",
        r.body
    );

    // The CLI asks the same way, audited with the OS user.
    let cli = |args: &[&str]| -> Result<(bool, String)> {
        let out = Command::new(bin("transmissor-collector")?)
            .args(["agent", "run-now", "--config"])
            .arg(&stack.collector_config)
            .arg(m.ibge.as_str())
            .args(args)
            .output()?;
        Ok(transmissor_tests::procs::outcome(&out))
    };
    let (ok, out) = cli(&["--job", "nao_existe"])?;
    assert!(!ok && out.contains("not in the plan published"), "{out}");
    let (ok, out) = cli(&["--job", "cbo"])?;
    assert!(
        ok && out.contains("runs cbo at its next heartbeat"),
        "{out}"
    );
    assert!(
        runs(&[("cbo", 2)]).await,
        "the CLI's request never ran:\n{}",
        daemon.log_text()
    );
    let actors: Vec<String> = c
        .query(
            "SELECT actor FROM transmissor.audit_log WHERE action = 'run.requested' ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actors.len(), 3, "{actors:?}");
    assert!(
        actors[2].starts_with("operator:") && !actors[2].ends_with("(web)"),
        "{actors:?}"
    );

    // The running agent's own metrics (`[metrics] listen`) count the runs
    // (the count moves when the agent has its report, just after the
    // collector's commit).
    let want = [
        "transmissor_agent_runs_total{job=\"equipes\",outcome=\"committed\"} 2",
        "transmissor_agent_runs_total{job=\"cbo\",outcome=\"committed\"} 2",
        "transmissor_agent_plan_version 1",
    ];
    let scrape = || async {
        transmissor_tests::http::get(agent_metrics, "/metrics", None)
            .await
            .map(|r| r.body)
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let body = scrape().await;
            want.iter().all(|line| body.contains(line))
        })
        .await,
        "{want:?} not all in:\n{}",
        scrape().await
    );
    daemon.terminate(Duration::from_secs(30)).await?;

    // An agent started for one run (cron) heartbeats before and after it,
    // but takes no request: it stays pending for the daemon.
    let (ok, out) = cli(&["--job", "equipes"])?;
    assert!(ok, "{out}");
    let (ok, out) = run_now(&cfg, &["cbo"])?;
    assert!(ok && out.contains("committed"), "{out}");
    let pending: i64 = c
        .query_one(
            "SELECT count(*) FROM transmissor.run_requests WHERE taken_at IS NULL AND job = 'equipes'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(pending, 1);
    assert_eq!((committed("equipes").await, committed("cbo").await), (2, 3));

    // A daemon that has no plan yet (a new state directory, as after an
    // install) gets the plan and the pending request in the same answer:
    // the plan is accepted first, so the request runs its job.
    let text = std::fs::read_to_string(&cfg)?;
    let state = cfg.with_file_name("state");
    let fresh_state = cfg.with_file_name("state-fresh");
    let fresh = cfg.with_file_name("fresh.toml");
    std::fs::write(
        &fresh,
        text.replace(
            &state.display().to_string(),
            &fresh_state.display().to_string(),
        ),
    )?;
    let mut daemon = spawn_service(&fresh, &dir.join("daemon-fresh.log"))?;
    assert!(
        runs(&[("equipes", 3), ("cbo", 3)]).await,
        "the request pending before the plan arrived never ran:\n{}",
        daemon.log_text()
    );
    daemon.terminate(Duration::from_secs(30)).await?;
    Ok(())
}
