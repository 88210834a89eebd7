//! Collectors are stateless: two replicas on the same database behind a TCP
//! balancer, and a transmission survives killing the replicas one after the
//! other in the middle of its upload.

use std::time::Duration;

use transmissor_tests::balancer::Balancer;
use transmissor_tests::pg::wait_until;
use transmissor_tests::stack::{Job, Stack, copy_dump};

const A: (&str, &str) = ("3550308", "São Paulo");

async fn open_batches(c: &tokio_postgres::Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM transmissor.batches b JOIN transmissor.transmissions t ON t.id = b.transmission_id \
         WHERE t.state = 'open'",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmission_survives_killing_replicas_mid_upload() -> anyhow::Result<()> {
    let s = Stack::new(&[A]).await?;
    let m = s.munis[0].clone();
    let src = s.source.connect(&m.db).await?;
    src.batch_execute(
        "CREATE TABLE grande AS SELECT g::int8 AS id, repeat(md5(g::text), 2) AS h FROM generate_series(1, 150000) g",
    )
    .await?;
    s.grant_reader(&m.db).await?;
    let (mut one, addr1) = s.spawn_collector_replica("replica-1").await?;
    let (mut two, addr2) = s.spawn_collector_replica("replica-2").await?;
    let lb = Balancer::start(vec![addr1, addr2]).await?;

    let cfg = s.agent_config(
        &m,
        &[Job::new(
            "grande",
            "snapshot",
            "grande",
            // Sleeps now and then so the upload spans both kills.
            "SELECT * FROM grande WHERE id % 15000 <> 0 OR (SELECT true FROM pg_sleep(1 + 0 * id))",
        )],
        "[spool]\nbatch_raw_bytes = \"16KiB\"\n",
    )?;
    let text = std::fs::read_to_string(&cfg)?.replace(
        &s.endpoint(),
        &format!("https://localhost:{}", lb.addr.port()),
    );
    std::fs::write(&cfg, text)?;
    let mut agent = s.spawn_agent(&cfg, "agent-replicas.log")?;

    // Kill replica 1 mid-upload, bring it back, then kill replica 2: whichever
    // one the agent's connection landed on, it loses it at least once.
    let analytic = s.analytic_client().await?;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            open_batches(&analytic).await >= 100
        })
        .await
    );
    one.kill();
    let after_first = open_batches(&analytic).await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            open_batches(&analytic).await >= after_first + 100
        })
        .await,
        "upload stalled after killing replica 1:\n{}",
        agent.log_text()
    );
    let (_one_again, addr1_again) = s.spawn_collector_replica("replica-1b").await?;
    lb.set_backends(vec![addr1_again, addr2]);
    let after_restart = open_batches(&analytic).await;
    let _ = wait_until(Duration::from_secs(30), || async {
        open_batches(&analytic).await >= after_restart + 50
    })
    .await;
    two.kill();
    let status = agent.wait(Duration::from_secs(300)).await?;
    assert!(status.success(), "{}", agent.log_text());
    // Whichever replica served the upload was killed under it at least once.
    assert!(
        agent.log_text().contains("collector call failed, retrying"),
        "the kills never hit the serving replica:\n{}",
        agent.log_text()
    );
    let source = copy_dump(&src, "SELECT id, h FROM grande ORDER BY id").await?;
    let target = copy_dump(
        &analytic,
        "SELECT id, h FROM analytic.grande WHERE _ibge = '3550308' ORDER BY id",
    )
    .await?;
    assert!(source == target, "target differs from source");
    let failed: i64 = analytic
        .query_one(
            "SELECT count(*) FROM transmissor.transmissions WHERE state <> 'committed'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(failed, 0);
    Ok(())
}
