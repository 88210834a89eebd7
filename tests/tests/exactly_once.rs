//! Nothing lost, nothing doubled, nothing half-visible: the collector is
//! SIGKILLed three times during one upload; the agent is SIGKILLed during
//! extraction and during upload; after each restart the target equals the
//! source row for row, while a concurrent reader only ever sees whole
//! transmissions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use transmissor_tests::pg::wait_until;
use transmissor_tests::stack::{Job, Municipality, Stack, copy_dump};

const A: (&str, &str) = ("3550308", "São Paulo");
const ROWS: i64 = 200_000;
const AGENT_TUNING: &str = "[spool]\nbatch_raw_bytes = \"16KiB\"\n\n";

/// The appended nominal list (every 10th row).
const LIST_QUERY: &str = "SELECT id, payload FROM grande WHERE id % 10 = 0";

fn list_job() -> Job {
    Job::new("lista", "append", "grande_lista", LIST_QUERY)
}

fn fast_jobs() -> Vec<Job> {
    vec![
        Job::new(
            "grande",
            "snapshot",
            "grande",
            "SELECT id, payload, valor FROM grande",
        ),
        list_job(),
    ]
}

/// Same columns, but the snapshot query sleeps now and then so extraction takes seconds.
fn slow_jobs() -> Vec<Job> {
    vec![
        Job::new(
            "grande",
            "snapshot",
            "grande",
            "SELECT id, payload, valor FROM grande WHERE id % 20000 <> 0 OR (SELECT true FROM pg_sleep(0.4 + 0 * id))",
        ),
        list_job(),
    ]
}

/// Rows visible per append transmission.
async fn list_counts(client: &tokio_postgres::Client) -> Vec<(i64, i64)> {
    client
        .query(
            "SELECT _transmission_id, count(*) FROM analytic.grande_lista GROUP BY 1",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default()
}

/// `(count, sum(id))` of A's visible slice (0, 0 before the target exists).
async fn visible(client: &tokio_postgres::Client) -> (i64, i64) {
    match client
        .query_one("SELECT count(*), coalesce(sum(id), 0)::int8 FROM analytic.grande WHERE _ibge = '3550308'", &[])
        .await
    {
        Ok(r) => (r.get(0), r.get(1)),
        Err(_) => (0, 0),
    }
}

async fn source_state(client: &tokio_postgres::Client) -> Result<(i64, i64)> {
    let r = client
        .query_one(
            "SELECT count(*), coalesce(sum(id), 0)::int8 FROM grande",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// Batches held for open transmissions.
async fn open_batches(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM transmissor.batches b JOIN transmissor.transmissions t ON t.id = b.transmission_id \
             WHERE t.state = 'open'",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

fn job_dirs(stack: &Stack, m: &Municipality) -> Vec<PathBuf> {
    let spool = stack
        .dir
        .join(format!("agent-{}", m.ibge))
        .join("state/spool");
    let mut out = Vec::new();
    for run in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        for job in std::fs::read_dir(run.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(job.path());
        }
    }
    out
}

fn batch_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "batch"))
                .count()
        })
        .unwrap_or(0)
}

async fn assert_target_equals_source(stack: &Stack, m: &Municipality) -> Result<()> {
    let src = stack.source.connect(&m.db).await?;
    let analytic = stack.analytic_client().await?;
    let s = copy_dump(&src, "SELECT id, payload, valor FROM grande ORDER BY id").await?;
    let t = copy_dump(
        &analytic,
        &format!(
            "SELECT id, payload, valor FROM analytic.grande WHERE _ibge = '{}' ORDER BY id",
            m.ibge
        ),
    )
    .await?;
    if s != t {
        bail!(
            "target differs from source: {} vs {} bytes",
            t.len(),
            s.len()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_lose_nothing_and_double_nothing() -> Result<()> {
    let mut stack = Stack::new(&[A]).await?;
    let m = stack.munis[0].clone();
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(&format!(
        "CREATE TABLE grande AS SELECT g::int8 AS id, repeat(md5(g::text), 2) AS payload, (g * 1.5)::numeric(14,2) AS valor \
         FROM generate_series(1, {ROWS}) g; ALTER TABLE grande ADD PRIMARY KEY (id)"
    ))
    .await?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector().await?;
    let analytic = stack.analytic_client().await?;

    // The concurrent reader: records every (count, sum) it ever sees.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let client = stack.analytic_client().await?;
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            let mut appended = BTreeSet::new();
            let mut polls = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seen.insert(visible(&client).await);
                appended.extend(list_counts(&client).await);
                polls += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (seen, appended, polls)
        })
    };
    let mut allowed = BTreeSet::from([(0, 0)]);

    // 1. The collector is killed three times during one upload.
    let fast = stack.agent_config(&m, &fast_jobs(), AGENT_TUNING)?;
    let mut agent = stack.spawn_agent(&fast, "agent-1.log")?;
    let mut threshold = 100;
    for kill in 1..=3 {
        let reached = wait_until(Duration::from_secs(120), || async {
            open_batches(&analytic).await >= threshold
        })
        .await;
        if !reached {
            bail!(
                "upload did not reach {threshold} batches before kill {kill}; agent log:\n{}",
                agent.log_text()
            );
        }
        stack.kill_collector();
        // A deliberate outage: the agent must see failed calls and retry.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stack.start_collector().await?;
        threshold = open_batches(&analytic).await + 100;
    }
    let status = agent.wait(Duration::from_secs(300)).await?;
    assert!(
        status.success(),
        "agent failed after collector kills:\n{}",
        agent.log_text()
    );
    allowed.insert(source_state(&src).await?);
    assert_target_equals_source(&stack, &m).await?;

    // 2. The agent is killed while extracting (the source changed meanwhile).
    src.batch_execute("DELETE FROM grande WHERE id % 7 = 0; UPDATE grande SET payload = 'mudou' WHERE id % 1000 = 1").await?;
    allowed.insert(source_state(&src).await?);
    let slow = stack.agent_config(&m, &slow_jobs(), AGENT_TUNING)?;
    let mut agent = stack.spawn_agent(&slow, "agent-2.log")?;
    let mid_extraction = wait_until(Duration::from_secs(60), || async {
        job_dirs(&stack, &m)
            .iter()
            .any(|d| batch_files(d) >= 10 && !d.join("done.json").exists())
    })
    .await;
    assert!(
        mid_extraction,
        "extraction never observed in progress:\n{}",
        agent.log_text()
    );
    agent.kill();
    let interrupted = job_dirs(&stack, &m);
    assert!(
        interrupted.iter().all(|d| !d.join("done.json").exists()),
        "extraction had finished"
    );
    let mut agent = stack.spawn_agent(&slow, "agent-3.log")?;
    let status = agent.wait(Duration::from_secs(300)).await?;
    assert!(
        status.success(),
        "agent failed after its own kill:\n{}",
        agent.log_text()
    );
    assert_target_equals_source(&stack, &m).await?;
    let aborted: i64 = analytic
        .query_one(
            "SELECT count(*) FROM transmissor.transmissions WHERE state = 'aborted'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(
        aborted, 1,
        "the interrupted extraction's transmission is recorded as aborted"
    );

    // 3. The agent is killed during upload, after extraction finished.
    src.batch_execute(
        "INSERT INTO grande SELECT g, 'novo', 0 FROM generate_series(300001, 310000) g",
    )
    .await?;
    allowed.insert(source_state(&src).await?);
    let mut agent = stack.spawn_agent(&fast, "agent-4.log")?;
    let uploading = wait_until(Duration::from_secs(120), || async {
        open_batches(&analytic).await >= 20
    })
    .await;
    assert!(uploading, "upload never observed:\n{}", agent.log_text());
    stack.kill_collector(); // the agent now retries with data in its spool
    let extracted = wait_until(Duration::from_secs(120), || async {
        job_dirs(&stack, &m)
            .iter()
            .filter(|d| d.join("done.json").exists())
            .count()
            == 2
    })
    .await;
    assert!(
        extracted,
        "extraction did not finish:\n{}",
        agent.log_text()
    );
    agent.kill();
    let open_tids: Vec<i64> = analytic
        .query(
            "SELECT id FROM transmissor.transmissions WHERE state = 'open'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !open_tids.is_empty(),
        "no open transmission after the agent's kill"
    );
    stack.start_collector().await?;
    let mut agent = stack.spawn_agent(&fast, "agent-5.log")?;
    let status = agent.wait(Duration::from_secs(300)).await?;
    assert!(
        status.success(),
        "agent failed after kill during upload:\n{}",
        agent.log_text()
    );
    for tid in &open_tids {
        let r = analytic
            .query_one(
                "SELECT state, job, rows FROM transmissor.transmissions WHERE id = $1",
                &[tid],
            )
            .await?;
        let (state, job, rows): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(
            state, "committed",
            "spooled transmission {tid} ({job}) was resumed and committed"
        );
        let expected: i64 = if job == "grande" {
            source_state(&src).await?.0
        } else {
            src.query_one(&format!("SELECT count(*) FROM ({LIST_QUERY}) q"), &[])
                .await?
                .get(0)
        };
        assert_eq!(
            rows, expected,
            "transmission {tid} ({job}) committed exactly the extracted rows"
        );
    }
    assert_target_equals_source(&stack, &m).await?;

    // Nothing left over anywhere.
    assert!(job_dirs(&stack, &m).is_empty(), "spool not empty");
    let staging: i64 = analytic
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'transmissor_staging'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(staging, 0, "staging tables left behind");
    let open: i64 = analytic
        .query_one(
            "SELECT count(*) FROM transmissor.transmissions WHERE state = 'open'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(open, 0);

    // Append: each committed transmission holds exactly its rows; aborted
    // ones hold none; the latest equals the source's list now.
    let committed: Vec<(i64, i64)> = analytic
        .query(
            "SELECT id, rows FROM transmissor.transmissions WHERE job = 'lista' AND state = 'committed' ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(committed.len() >= 4, "append runs committed: {committed:?}");
    let in_target: BTreeSet<(i64, i64)> = list_counts(&analytic).await.into_iter().collect();
    assert_eq!(
        in_target,
        committed.iter().copied().collect(),
        "append rows per transmission"
    );
    let last = committed.last().map(|c| c.0).unwrap_or_default();
    let list_source = copy_dump(&src, &format!("{LIST_QUERY} ORDER BY id")).await?;
    let list_target = copy_dump(
        &analytic,
        &format!("SELECT id, payload FROM analytic.grande_lista WHERE _transmission_id = {last} ORDER BY id"),
    )
    .await?;
    assert!(
        list_source == list_target,
        "latest append differs from the source list"
    );

    stop.store(true, Ordering::Relaxed);
    let (seen, appended, polls) = reader.await?;
    let partial_append: Vec<_> = appended.difference(&in_target).collect();
    assert!(
        partial_append.is_empty(),
        "a reader saw partial appends {partial_append:?}"
    );
    assert!(
        polls > 50,
        "the concurrent reader barely ran ({polls} polls)"
    );
    let partial: Vec<_> = seen.difference(&allowed).collect();
    assert!(
        partial.is_empty(),
        "a reader saw partial states {partial:?}; allowed {allowed:?}"
    );
    stack.stop_collector().await?;
    Ok(())
}
