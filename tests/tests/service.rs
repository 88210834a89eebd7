//! The services as operators see them: `grpc.health.v1` follows the analytic
//! database's reachability (never a constant SERVING); a scheduled agent runs
//! again and again and stops cleanly on SIGTERM.

use std::time::Duration;

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use transmissor_tests::client;
use transmissor_tests::pg::wait_until;
use transmissor_tests::stack::{Job, Stack};

const A: (&str, &str) = ("3550308", "São Paulo");

async fn status(
    c: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> Option<ServingStatus> {
    c.check(HealthCheckRequest {
        service: service.into(),
    })
    .await
    .ok()
    .and_then(|r| ServingStatus::try_from(r.into_inner().status).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_database() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[A]).await?;
    stack.start_collector_in_process().await?;
    // Health needs no client certificate (load balancers probe it).
    let mut health = HealthClient::new(client::channel(
        &stack.endpoint(),
        &stack.pki.ca_cert,
        None,
    )?);
    for service in ["", "transmissor.v1.Transmission"] {
        let serving = wait_until(Duration::from_secs(10), || {
            let mut h = health.clone();
            async move { status(&mut h, service).await == Some(ServingStatus::Serving) }
        })
        .await;
        assert!(serving, "{service:?} never SERVING");
    }

    stack.analytic.stop()?;
    let down = wait_until(Duration::from_secs(15), || {
        let mut h = health.clone();
        async move { status(&mut h, "").await == Some(ServingStatus::NotServing) }
    })
    .await;
    assert!(down, "health still SERVING with the database down");
    // Data calls meanwhile fail as retriable.
    let a = stack.munis[0].clone();
    let mut c = client::transmission(
        &stack.endpoint(),
        &stack.pki.ca_cert,
        Some((&a.cert, &a.key)),
    )?;
    let e = c
        .status(transmissor_proto::pb::StatusRequest { transmission_id: 1 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    stack.analytic.start_again()?;
    let up = wait_until(Duration::from_secs(15), || {
        let mut h = health.clone();
        async move { status(&mut h, "").await == Some(ServingStatus::Serving) }
    })
    .await;
    assert!(up, "health did not return to SERVING");
    assert_eq!(status(&mut health, "").await, Some(ServingStatus::Serving));
    stack.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_agent_runs_repeatedly_and_stops_on_sigterm() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[A]).await?;
    let m = stack.munis[0].clone();
    stack
        .source
        .connect(&m.db)
        .await?
        .batch_execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
        .await?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector().await?;
    let cfg = stack.agent_config(
        &m,
        &[Job::new("lista", "append", "t_lista", "SELECT * FROM t")],
        "[schedule]\nevery = \"1s\"\n",
    )?;
    let log = stack.dir.join("agent-scheduled.log");
    let cfg_s = cfg.display().to_string();
    let mut agent = transmissor_tests::procs::Proc::spawn(
        "transmissor-agent",
        ["run", "--config", &cfg_s],
        &[],
        &log,
    )?;
    let analytic = stack.analytic_client().await?;
    let three = wait_until(Duration::from_secs(60), || async {
        analytic
            .query_one(
                "SELECT count(*) FROM transmissor.transmissions WHERE state = 'committed'",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) >= 3)
            .unwrap_or(false)
    })
    .await;
    assert!(
        three,
        "fewer than 3 scheduled runs committed:\n{}",
        agent.log_text()
    );
    let status = agent.terminate(Duration::from_secs(20)).await?;
    assert!(
        status.success(),
        "agent exit {status:?}:\n{}",
        agent.log_text()
    );
    // Each committed run appended exactly its 1000 rows.
    let bad: i64 = analytic
        .query_one(
            "SELECT count(*) FROM (SELECT _transmission_id, count(*) n FROM analytic.t_lista GROUP BY 1) q WHERE n <> 1000",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(bad, 0);
    stack.stop_collector().await?;
    Ok(())
}
