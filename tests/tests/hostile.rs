//! A hostile network and a compromised agent (issue #9): no single call
//! takes the collector down. Sizes and counts from the wire are bounded
//! before use, nothing heavy happens before the caller is known, per-agent
//! quotas hold, and transmissions nobody will finish are reaped.

use std::time::Duration;

use tonic::Code;
use uuid::Uuid;

use transmissor_proto::pb;
use transmissor_tests::client::{self, batch};
use transmissor_tests::raw_h2::{
    connect_without_certificate, grpc_request, grpc_status, unfinished_message,
};
use transmissor_tests::stack::{Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("2304400", "Fortaleza");

fn begin(run: Uuid, job: &str, cols: &[(String, &str)]) -> pb::BeginRequest {
    pb::BeginRequest {
        run_id: run.to_string(),
        job: job.into(),
        mode: pb::Mode::Snapshot as i32,
        target: format!("t_{job}"),
        columns: cols
            .iter()
            .map(|(n, t)| pb::Column {
                name: n.clone(),
                source_type: t.to_string(),
                target_type: t.to_string(),
                pseudonymised: false,
            })
            .collect(),
        plan_version: "test".into(),
        ..Default::default()
    }
}

fn one_col() -> Vec<(String, &'static str)> {
    vec![("id".to_string(), "integer")]
}

async fn stack(limits: &str) -> anyhow::Result<Stack> {
    let mut s = Stack::with_options(
        &[A, B],
        StackOptions {
            collector_extra_toml: format!("\n[limits]\n{limits}\n"),
            ..Default::default()
        },
    )
    .await?;
    s.start_collector_in_process().await?;
    Ok(s)
}

/// `SELECT state FROM transmissor.transmissions WHERE id = $1`.
async fn state_of(s: &Stack, id: i64) -> anyhow::Result<String> {
    let c = s.analytic_client().await?;
    Ok(c.query_one(
        "SELECT state FROM transmissor.transmissions WHERE id = $1",
        &[&id],
    )
    .await?
    .get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_begin_costs_nothing_and_only_data_types_pass() -> anyhow::Result<()> {
    let s = stack("").await?;
    let a = s.munis[0].clone();
    let mut c = client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&a.cert, &a.key)))?;

    // 500,000 columns: refused from the count, before one type is looked at
    // (this used to be one query per column).
    let cols: Vec<(String, &str)> = (0..500_000).map(|i| (format!("c{i}"), "integer")).collect();
    let run = Uuid::now_v7();
    let e = c.begin(begin(run, "wide", &cols)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .contains("sends 500000 columns; a target holds at most 400"),
        "{e:?}"
    );

    // Catalog types that would let an agent probe the analytic database.
    for ty in ["regclass", "regrole", "aclitem", "oid", "integer[]); drop"] {
        let e = c
            .begin(begin(Uuid::now_v7(), "probe", &[("x".to_string(), ty)]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{ty}: {e:?}");
        assert!(
            e.message().contains("not among the data types"),
            "{ty}: {e:?}"
        );
    }
    // A name far too long is refused without echoing it whole.
    let long = "x".repeat(1 << 20);
    let mut req = begin(Uuid::now_v7(), "long", &one_col());
    req.plan_version = long.clone();
    let e = c.begin(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().len() < 300, "{} bytes", e.message().len());
    let e = c
        .begin(begin(Uuid::now_v7(), &long, &one_col()))
        .await
        .unwrap_err();
    assert!(e.message().len() < 300, "{} bytes", e.message().len());

    let n: i64 = s
        .analytic_client()
        .await?
        .query_one("SELECT count(*) FROM transmissor.transmissions", &[])
        .await?
        .get(0);
    assert_eq!(n, 0, "a refused Begin recorded a transmission");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_nothing_heavy_happens() -> anyhow::Result<()> {
    let s = stack("max_streams_per_connection = 8").await?;
    let mut send = connect_without_certificate(s.collector_addr, &s.pki.ca_cert).await?;

    // A PutBatch that announces a 30 MiB message and sends 1 KiB of it, its
    // stream left open: refused from the headers, the body never awaited.
    send = send.ready().await?;
    let (resp, mut body) =
        send.send_request(grpc_request("/transmissor.v1.Transmission/PutBatch"), false)?;
    body.send_data(unfinished_message(), false)?;
    let resp = tokio::time::timeout(Duration::from_secs(60), resp)
        .await
        .map_err(|_| {
            anyhow::anyhow!("the collector waited for the body of a call without a certificate")
        })??;
    assert_eq!(grpc_status(&resp).as_deref(), Some("16"), "{resp:?}");
    let msg = resp
        .headers()
        .get("grpc-message")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("no%20client%20certificate") || msg.contains("no client certificate"),
        "{msg}"
    );
    // The same for the lifecycle service.
    send = send.ready().await?;
    let (resp, _body) = send.send_request(
        grpc_request("/transmissor.v1.AgentLifecycle/Heartbeat"),
        false,
    )?;
    let resp = tokio::time::timeout(Duration::from_secs(60), resp).await??;
    assert_eq!(grpc_status(&resp).as_deref(), Some("16"), "{resp:?}");

    // The connection's stream limit is advertised (none was, before: any
    // number of streams was allowed).
    assert_eq!(send.current_max_send_streams(), 8);
    // (h2 enforces what it advertises: a client opening more streams gets
    // them refused with REFUSED_STREAM.)
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bomb_for_someone_elses_transmission_is_not_decompressed() -> anyhow::Result<()> {
    let s = stack("").await?;
    let (a, b) = (s.munis[0].clone(), s.munis[1].clone());
    let mut ca = client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&a.cert, &a.key)))?;
    let mut cb = client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&b.cert, &b.key)))?;
    let id = ca
        .begin(begin(Uuid::now_v7(), "owned", &one_col()))
        .await?
        .into_inner()
        .transmission_id;
    // 200 MiB of zeros in a tiny frame, declared as 1 MiB: decompressing it
    // would hit the cap (RESOURCE_EXHAUSTED); it must not get that far.
    let zeros = vec![0u8; 200 << 20];
    let mut bomb = batch(id, 1, &zeros, 1);
    bomb.raw_len = 1 << 20;
    let e = cb.put_batch(bomb.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // A transmission that does not exist at all: the same answer.
    bomb.transmission_id = id + 1000;
    let e = cb.put_batch(bomb).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(state_of(&s, id).await?, "open");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_agent_quotas_hold_and_spare_the_others() -> anyhow::Result<()> {
    let s = stack(
        "max_open_transmissions_per_agent = 2\nmax_staged_bytes_per_agent = \"64KiB\"\nmax_batches_per_transmission = 10",
    )
    .await?;
    let (a, b) = (s.munis[0].clone(), s.munis[1].clone());
    let mut ca = client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&a.cert, &a.key)))?;
    let mut cb = client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&b.cert, &b.key)))?;

    let mut ids = Vec::new();
    for job in ["q1", "q2"] {
        ids.push(
            ca.begin(begin(Uuid::now_v7(), job, &one_col()))
                .await?
                .into_inner()
                .transmission_id,
        );
    }
    let e = ca
        .begin(begin(Uuid::now_v7(), "q3", &one_col()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("max_open_transmissions_per_agent"),
        "{e:?}"
    );
    // Another agent is not affected.
    cb.begin(begin(Uuid::now_v7(), "q1", &one_col())).await?;

    // Batches per transmission: sequence numbers past the quota are refused,
    // and so is a commit declaring more.
    let e = ca
        .put_batch(batch(ids[0], 11, b"1\n", 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let e = ca
        .commit(pb::CommitRequest {
            transmission_id: ids[0],
            total_batches: 11,
            total_rows: 11,
            digest: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Staged bytes: 40 KiB fits under 64 KiB, 40 more do not, in either of
    // the agent's transmissions.
    let rows: Vec<u8> = (0..8192u32)
        .flat_map(|i| format!("{:04}\n", i % 10_000).into_bytes())
        .collect();
    assert_eq!(rows.len(), 40_960);
    ca.put_batch(batch(ids[0], 1, &rows, 8192)).await?;
    let e = ca
        .put_batch(batch(ids[1], 1, &rows, 8192))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_staged_bytes_per_agent"), "{e:?}");
    // A repeat of a batch already held is still acknowledged.
    let dup = ca
        .put_batch(batch(ids[0], 1, &rows, 8192))
        .await?
        .into_inner();
    assert!(dup.duplicate);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_transmissions_are_reaped() -> anyhow::Result<()> {
    // The collector's own reaper first runs 5 minutes after start: the test
    // runs a round itself, with the collector's configuration.
    let s = stack("stale_transmission_after = \"1h\"").await?;
    let (a, b) = (s.munis[0].clone(), s.munis[1].clone());
    let mut ca = client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&a.cert, &a.key)))?;
    let mut cb = client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&b.cert, &b.key)))?;
    let stale = ca
        .begin(begin(Uuid::now_v7(), "old", &one_col()))
        .await?
        .into_inner()
        .transmission_id;
    ca.put_batch(batch(stale, 1, b"1\n2\n", 2)).await?;
    let fresh = ca
        .begin(begin(Uuid::now_v7(), "new", &one_col()))
        .await?
        .into_inner()
        .transmission_id;
    let orphan = cb
        .begin(begin(Uuid::now_v7(), "orphan", &one_col()))
        .await?
        .into_inner()
        .transmission_id;

    // Two hours pass for the first transmission (its Begin and its batch).
    let db = s.analytic_client().await?;
    db.execute(
        "UPDATE transmissor.transmissions SET started_at = now() - interval '2 hours' WHERE id = $1",
        &[&stale],
    )
    .await?;
    db.execute(
        "UPDATE transmissor.batches SET received_at = now() - interval '2 hours' WHERE transmission_id = $1",
        &[&stale],
    )
    .await?;
    // B's agent is revoked (as a re-enrollment does): its transmission can
    // never commit.
    db.execute(
        "UPDATE transmissor.agents SET revoked_at = now() WHERE ibge = $1",
        &[&b.ibge.as_str()],
    )
    .await?;

    let cfg = transmissor_collector::config::CollectorConfig::load(&s.collector_config)?;
    let loader =
        transmissor_collector::load::Loader::new(s.collector_pool().await?, &cfg.load, &cfg.limits);
    assert_eq!(
        loader.reap(cfg.limits.stale_transmission_after).await?,
        2,
        "the stale and the orphaned transmissions, and only they"
    );
    for id in [stale, orphan] {
        assert_eq!(state_of(&s, id).await?, "aborted");
    }
    let staging: Option<String> = db
        .query_one(
            "SELECT to_regclass($1)::text",
            &[&format!("transmissor_staging.t_{stale}")],
        )
        .await?
        .get(0);
    assert_eq!(staging, None, "the staging table was kept");
    let error: String = db
        .query_one(
            "SELECT error FROM transmissor.transmissions WHERE id = $1",
            &[&stale],
        )
        .await?
        .get(0);
    assert!(error.contains("nothing received for 1h"), "{error}");
    assert_eq!(
        state_of(&s, fresh).await?,
        "open",
        "a live transmission was reaped"
    );
    // The agent is told when it comes back.
    let e = ca
        .commit(pb::CommitRequest {
            transmission_id: stale,
            total_batches: 1,
            total_rows: 2,
            digest: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("aborted"), "{e:?}");
    Ok(())
}
