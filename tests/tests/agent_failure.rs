//! Agent-side failures: a job whose query fails (syntax, permission,
//! timeout) is recorded as failed with the database's message; the other
//! jobs of the run are unaffected (each job runs in its own savepoint of the
//! run's snapshot). A source that cannot be reached fails the run as a unit.

use transmissor_tests::stack::{Job, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_jobs_are_recorded_and_others_commit() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[("3550308", "São Paulo")]).await?;
    let m = stack.munis[0].clone();
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(
        "CREATE TABLE publica AS SELECT g AS id, 'v' || g AS v FROM generate_series(1, 5000) g; \
         CREATE TABLE segredo (id int);",
    )
    .await?;
    stack.grant_reader(&m.db).await?;
    src.batch_execute("REVOKE SELECT ON segredo FROM transmissor_leitura")
        .await?;
    stack.start_collector_in_process().await?;

    let cfg = stack.agent_config(
        &m,
        &[
            Job::new("antes", "snapshot", "publica_a", "SELECT * FROM publica"),
            Job::new("sintaxe", "snapshot", "x_sintaxe", "SELEC * FROM publica"),
            Job::new(
                "permissao",
                "snapshot",
                "x_permissao",
                "SELECT * FROM segredo",
            ),
            Job::new(
                "demora",
                "append",
                "x_demora",
                "SELECT id, pg_sleep(0.01) IS NULL AS s FROM publica",
            ),
            Job::new(
                "depois",
                "append",
                "publica_b",
                "SELECT * FROM publica WHERE id % 2 = 0",
            ),
        ],
        "",
    )?;
    // A short statement timeout for the whole source session.
    let text = std::fs::read_to_string(&cfg)?
        .replace("[source]\n", "[source]\nstatement_timeout = \"1s\"\n");
    std::fs::write(&cfg, text)?;

    let report = stack.run_agent_in_process(&cfg).await?;
    let text = report.to_string();
    assert!(!report.all_committed(), "{text}");
    let line = |job: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{job} (run")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("antes").contains("committed, transmission") && line("antes").contains("5000 rows"),
        "{text}"
    );
    assert!(
        line("depois").contains("committed") && line("depois").contains("2500 rows"),
        "{text}"
    );
    assert!(
        line("sintaxe").contains("FAILED") && line("sintaxe").contains("42601"),
        "{text}"
    );
    assert!(
        line("permissao").contains("FAILED") && line("permissao").contains("permission denied"),
        "{text}"
    );
    assert!(
        line("demora").contains("FAILED") && line("demora").contains("statement timeout"),
        "{text}"
    );

    // The collector recorded every failure with the database's message.
    let analytic = stack.analytic_client().await?;
    for (job, needle) in [
        ("sintaxe", "42601 syntax_error"),
        ("permissao", "permission denied"),
        ("demora", "statement timeout"),
    ] {
        let r = analytic
            .query_one(
                "SELECT state, coalesce(error, '') FROM transmissor.transmissions WHERE job = $1",
                &[&job],
            )
            .await?;
        let (state, error): (String, String) = (r.get(0), r.get(1));
        assert_eq!(state, "failed", "{job}");
        assert!(error.contains(needle), "{job}: {error}");
    }
    // Nothing of the failed jobs is visible; the timed-out one had no target rows.
    let n: i64 = analytic
        .query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'analytic' AND table_name LIKE 'x\\_%'", &[])
        .await?
        .get(0);
    let demora_rows: i64 = if n > 0 {
        analytic
            .query_one("SELECT count(*) FROM analytic.x_demora", &[])
            .await?
            .get(0)
    } else {
        0
    };
    assert_eq!(demora_rows, 0);
    // The spool is clean: failures are reported, not retried forever.
    let spool = stack
        .dir
        .join(format!("agent-{}", m.ibge))
        .join("state/spool");
    let left: Vec<_> = std::fs::read_dir(&spool)?.collect();
    assert!(left.is_empty(), "spool not clean: {left:?}");

    // The status report shows them too.
    let cfg = transmissor_collector::config::CollectorConfig::load(&stack.collector_config)?;
    let pool = transmissor_collector::db::connect(&cfg.database).await?;
    let status = transmissor_collector::status::render(
        &transmissor_collector::status::last_transmissions(&pool).await?,
    );
    assert!(
        status.contains("sintaxe")
            && status.contains("failed")
            && status.contains("42601 syntax_error"),
        "{status}"
    );
    stack.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_source_fails_the_run() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[("3550308", "São Paulo")]).await?;
    let m = stack.munis[0].clone();
    stack.start_collector_in_process().await?;
    let cfg = stack.agent_config(&m, &[Job::new("a", "snapshot", "t", "SELECT 1 AS x")], "")?;
    let text = std::fs::read_to_string(&cfg)?.replace(
        &format!("port = {}", stack.source.port),
        &format!("port = {}", transmissor_tests::pg::free_port()),
    );
    std::fs::write(&cfg, text)?;
    let report = stack.run_agent_in_process(&cfg).await?;
    let e = report.run_error.clone().unwrap_or_default();
    assert!(
        e.contains("cannot connect to the source database"),
        "{report}"
    );
    stack.stop_collector().await?;
    Ok(())
}
