//! Analysts are never held behind a load. One analyst runs a long report
//! (a transaction that read the target and stays open); meanwhile a
//! municipality commits a new snapshot, and another brings a new column.
//! A quick reader polls the target all along with a lock timeout, so a
//! read queued behind a strong lock fails the test instead of waiting.
//!
//! With the former layout (a partition per municipality, swapped with
//! DETACH/ATTACH under ACCESS EXCLUSIVE), the commit waited for the report
//! and every quick read queued behind the commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use transmissor_tests::pg::wait_until;
use transmissor_tests::stack::{Job, Stack, StackOptions, copy_dump};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("2304400", "Fortaleza");

/// A hang guard, not a performance bound: a load blocked by the report
/// would wait for as long as the report runs (here: forever).
const HANG: Duration = Duration::from_secs(180);

async fn column_exists(analytic: &tokio_postgres::Client) -> anyhow::Result<i64> {
    let q = "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = 'analytic' AND table_name = 'visitas' AND column_name = 'st_novo'";
    Ok(analytic.query_one(q, &[]).await?.get(0))
}

fn job() -> Job {
    Job::new("visitas", "snapshot", "visitas", "SELECT * FROM visitas")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_report_holds_back_no_commit_and_no_reader() -> anyhow::Result<()> {
    let mut stack = Stack::with_options(
        &[A, B],
        StackOptions {
            // A schema change gives way to readers for 2 s per Begin, then
            // the agent is told to retry later.
            collector_extra_toml:
                "\n[load]\nddl_lock_timeout = \"100ms\"\nddl_retry_for = \"2s\"\n".into(),
            ..Default::default()
        },
    )
    .await?;
    stack.start_collector_in_process().await?;
    let (a, b) = (stack.munis[0].clone(), stack.munis[1].clone());
    for (m, n) in [(&a, 5000), (&b, 3000)] {
        let src = stack.source.connect(&m.db).await?;
        src.batch_execute(&format!(
            "CREATE TABLE visitas AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, {n}) g"
        ))
        .await?;
        stack.grant_reader(&m.db).await?;
    }
    // The harness's agents retry every 100 ms to 2 s.
    let retry = "";
    for m in [&a, &b] {
        let r = stack
            .run_agent_in_process(&stack.agent_config(m, &[job()], retry)?)
            .await?;
        assert!(r.all_committed(), "{r}");
    }

    // The analyst's long report: it read the target and is still running.
    let report = stack.analytic_client().await?;
    report
        .batch_execute("BEGIN; SELECT count(*) FROM analytic.visitas")
        .await?;

    // A quick reader, all along.
    let quick = stack.analytic_client().await?;
    quick.batch_execute("SET lock_timeout = '10s'").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let poller = {
        let (stop, reads) = (stop.clone(), reads.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                quick
                    .query_one("SELECT count(*) FROM analytic.visitas", &[])
                    .await
                    .map_err(|e| anyhow::anyhow!("a quick read was held behind a lock: {e}"))?;
                reads.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };

    // A commits a new snapshot while the report runs.
    let src_a = stack.source.connect(&a.db).await?;
    src_a
        .batch_execute(
            "DELETE FROM visitas WHERE id > 4000; UPDATE visitas SET h = 'novo' WHERE id < 10",
        )
        .await?;
    let r = tokio::time::timeout(
        HANG,
        stack.run_agent_in_process(&stack.agent_config(&a, &[job()], retry)?),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the snapshot commit waited for the analyst's report"))??;
    assert!(r.all_committed(), "{r}");
    let analytic = stack.analytic_client().await?;
    assert_eq!(
        copy_dump(
            &analytic,
            &format!(
                "SELECT id, h FROM analytic.visitas WHERE _ibge = '{}' ORDER BY id",
                A.0
            )
        )
        .await?,
        copy_dump(&src_a, "SELECT id, h FROM visitas ORDER BY id").await?,
        "the new snapshot is visible while the report still runs"
    );

    // B's next PEC release brings a column. Adding it needs a moment
    // without readers: the Begin tries with a short lock timeout and gives
    // way, again and again, while the report runs.
    let src_b = stack.source.connect(&b.db).await?;
    src_b
        .batch_execute("ALTER TABLE visitas ADD COLUMN st_novo smallint DEFAULT 1")
        .await?;
    let cfg_b = stack.agent_config(&b, &[job()], retry)?;
    // B's run, and beside it: wait until the schema change has tried its
    // lock, check it gave way, then end the report.
    let report_side = async {
        let tried = wait_until(HANG, || {
            let analytic = &analytic;
            async move {
                analytic
                    .query_one(
                        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                         WHERE NOT l.granted AND l.mode = 'AccessExclusiveLock' AND c.relname LIKE 'visitas%'",
                        &[],
                    )
                    .await
                    .map(|r| r.get::<_, i64>(0) > 0)
                    .unwrap_or(false)
            }
        })
        .await;
        anyhow::ensure!(tried, "the schema change never tried its lock");
        let reads = reads.load(Ordering::Relaxed);
        anyhow::ensure!(
            column_exists(&analytic).await? == 0,
            "the column was added while the report ran"
        );
        // The report ends: the column can be added and B's rows arrive.
        report.batch_execute("COMMIT").await?;
        anyhow::Ok(reads)
    };
    let (r, reads_while_waiting) = tokio::join!(
        tokio::time::timeout(HANG, stack.run_agent_in_process(&cfg_b)),
        report_side
    );
    let reads_while_waiting = reads_while_waiting?;
    let r = r.map_err(|_| anyhow::anyhow!("the schema change never got its moment"))??;
    assert!(r.all_committed(), "{r}");
    assert_eq!(column_exists(&analytic).await?, 1);
    assert_eq!(
        copy_dump(
            &analytic,
            &format!(
                "SELECT id, h, st_novo FROM analytic.visitas WHERE _ibge = '{}' ORDER BY id",
                B.0
            )
        )
        .await?,
        copy_dump(&src_b, "SELECT id, h, st_novo FROM visitas ORDER BY id").await?
    );

    stop.store(true, Ordering::Relaxed);
    poller.await??;
    let total = reads.load(Ordering::Relaxed);
    assert!(
        reads_while_waiting > 0 && total > reads_while_waiting,
        "the quick reader read throughout ({reads_while_waiting} reads before the report ended, {total} in all)"
    );
    stack.stop_collector().await?;
    Ok(())
}
