//! What a caller can make authentication and the front doors cost (issue
//! #20): identity checks are cached yet a revocation takes effect on the
//! next call on every replica; one agent's flood is refused before it
//! reaches the database, so it cannot hold another agent's calls; the
//! open-transmission quota is exact under concurrency; a peer's digest is
//! bounded; run-now requests are bounded per municipality.
//!
//! "The database is stuck" is made real, not timed: the test holds an
//! `ACCESS EXCLUSIVE` lock on `transmissor.retired_cas`, which every
//! uncached identity check reads, so any call that needs the database for
//! its caller waits until the lock is released.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;
use transmissor_proto::pb::transmission_client::TransmissionClient;
use transmissor_tests::client;
use transmissor_tests::stack::{Municipality, Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("2304400", "Fortaleza");

/// Generous bound for "answered at all" (never a measure of speed).
const ANSWERED: Duration = Duration::from_secs(60);

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

fn endpoint(port: u16) -> String {
    format!("https://localhost:{port}")
}

fn lifecycle(
    s: &Stack,
    endpoint: &str,
    m: &Municipality,
) -> anyhow::Result<AgentLifecycleClient<Channel>> {
    Ok(AgentLifecycleClient::new(client::channel(
        endpoint,
        &s.pki.ca_cert,
        Some((&m.cert, &m.key)),
    )?))
}

fn transmission(s: &Stack, m: &Municipality) -> anyhow::Result<TransmissionClient<Channel>> {
    client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&m.cert, &m.key)))
}

/// A second collector on the same database, in this process, on its own
/// port (a replica); it stops with the returned token.
async fn replica(s: &Stack) -> anyhow::Result<(CancellationToken, u16)> {
    let port = transmissor_tests::pg::free_port();
    let text = std::fs::read_to_string(&s.collector_config)?.replace(
        &format!("listen = \"{}\"", s.collector_addr),
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let path = s.dir.join("replica.toml");
    std::fs::write(&path, text)?;
    let cfg = transmissor_collector::config::CollectorConfig::load(&path)?;
    let prepared = transmissor_collector::app::prepare(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(cfg.server.listen).await?;
    let stop = CancellationToken::new();
    let t = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = transmissor_collector::app::run(&cfg, prepared, listener, t).await {
            tracing::error!(error = %e, "replica failed");
        }
    });
    Ok((stop, port))
}

/// Holds `ACCESS EXCLUSIVE` on the table every uncached identity check
/// reads, until the returned client's transaction ends.
async fn block_identity_checks(s: &Stack) -> anyhow::Result<tokio_postgres::Client> {
    let c = s.analytic_client().await?;
    c.batch_execute("BEGIN; LOCK TABLE transmissor.retired_cas IN ACCESS EXCLUSIVE MODE")
        .await?;
    Ok(c)
}

/// Waits until `n` collectors listen for identity changes (results are
/// kept only while they do).
async fn wait_listening(s: &Stack, n: i64) -> anyhow::Result<()> {
    let listening = "SELECT count(*) FROM pg_stat_activity \
                     WHERE query = 'LISTEN \"transmissor_identity\"'";
    for _ in 0..400 {
        if count(s, listening).await? == n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the collectors do not listen for identity changes")
}

async fn heartbeat(
    c: &mut AgentLifecycleClient<Channel>,
) -> Result<pb::HeartbeatResponse, tonic::Status> {
    match tokio::time::timeout(ANSWERED, c.heartbeat(pb::HeartbeatRequest::default())).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(
            "no answer from the collector",
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_takes_effect_on_the_next_call_on_every_replica() -> anyhow::Result<()> {
    let s = stack("").await?;
    let a = s.munis[0].clone();
    let (stop_replica, port) = replica(&s).await?;
    let mut one = lifecycle(&s, &s.endpoint(), &a)?;
    let mut two = lifecycle(&s, &endpoint(port), &a)?;
    // The replica listens once it answers.
    let mut answered = false;
    for _ in 0..400 {
        if heartbeat(&mut two).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(answered, "the replica never answered");
    wait_listening(&s, 2).await?;
    // Both have the agent cached.
    for _ in 0..2 {
        heartbeat(&mut one).await?;
        heartbeat(&mut two).await?;
    }
    // Revoked with plain SQL, on connections opened before: the very next
    // call on each collector is refused.
    s.analytic_client()
        .await?
        .execute(
            "UPDATE transmissor.agents SET revoked_at = now() WHERE id = $1",
            &[&a.agent_id],
        )
        .await?;
    for (name, c) in [("first collector", &mut one), ("replica", &mut two)] {
        let e = heartbeat(c).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{name}: {e:?}");
        assert!(e.message().contains("revoked"), "{name}: {e:?}");
    }
    stop_replica.cancel();
    Ok(())
}

/// Waits for the cache's listener to report a change (or going live).
async fn next_change(changed: &mut tokio::sync::mpsc::UnboundedReceiver<()>) -> anyhow::Result<()> {
    tokio::time::timeout(ANSWERED, changed.recv())
        .await
        .map_err(|_| anyhow::anyhow!("no notification"))?
        .ok_or_else(|| anyhow::anyhow!("listener ended"))
}

/// A cached result for `m`'s agent.
fn cached(
    cache: &transmissor_collector::identity::IdentityCache,
    m: &Municipality,
) -> anyhow::Result<transmissor_collector::identity::cache::ChainKey> {
    use transmissor_collector::identity::{Caller, Presented, Standing, cache::ChainKey};
    let chain: Vec<rustls_pki_types::CertificateDer<'static>> =
        rustls_pki_types::pem::PemObject::pem_file_iter(&m.cert)?.collect::<Result<_, _>>()?;
    let key = ChainKey::of(&chain);
    let generation = cache.generation().expect("live");
    let caller = Caller {
        ibge: m.ibge,
        agent_id: m.agent_id,
    };
    let presented = Presented {
        serial: String::new(),
        spki_sha256: [0; 32],
        standing: Standing::Unrecorded,
    };
    cache.put(key, generation, caller, presented);
    anyhow::ensure!(cache.get(&key).is_some(), "not stored");
    Ok(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_changes_clear_the_cache_and_a_lost_listener_disables_it() -> anyhow::Result<()> {
    use transmissor_collector::identity::IdentityCache;
    let s = stack("").await?;
    let b = s.munis[1].clone();
    let pool = s.collector_pool().await?;
    let cache = std::sync::Arc::new(IdentityCache::new(Duration::from_secs(300)));
    let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    tokio::spawn(cache.clone().listen(pool.clone(), stop.clone(), move || {
        let _ = tx.send(());
    }));
    next_change(&mut changed).await?; // live
    let db = s.analytic_client().await?;
    for change in [
        "UPDATE transmissor.agents SET revoked_at = now() WHERE ibge = '2304400'",
        "UPDATE transmissor.certificates SET superseded_at = now() WHERE false",
        "INSERT INTO transmissor.retired_cas (spki_sha256, subject, cert_pem, retired_by) \
         VALUES ('\\x00', 'cn', 'pem', 'test')",
    ] {
        let key = cached(&cache, &b)?;
        db.execute(change, &[]).await?;
        next_change(&mut changed).await?;
        assert!(cache.get(&key).is_none(), "kept after: {change}");
    }
    // The listening connection dies: nothing cached is used until it is
    // back, and what was cached is gone.
    let key = cached(&cache, &b)?;
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = 'LISTEN \"transmissor_identity\"'",
        &[],
    )
    .await?;
    next_change(&mut changed).await?; // listening again
    assert!(cache.get(&key).is_none(), "kept across a lost listener");
    cached(&cache, &b)?;
    stop.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agents_flood_is_refused_before_the_database_and_holds_nobody() -> anyhow::Result<()> {
    let s = stack("max_calls_per_agent = 8").await?;
    let (a, b) = (s.munis[0].clone(), s.munis[1].clone());
    let mut lb = lifecycle(&s, &s.endpoint(), &b)?;
    wait_listening(&s, 1).await?;
    for _ in 0..2 {
        heartbeat(&mut lb).await?;
    }

    // The database cannot answer identity checks now. A floods with 300
    // Status calls over ten connections (each within the streams one
    // connection may open); A was never checked before.
    let lock = block_identity_checks(&s).await?;
    let mut flood = tokio::task::JoinSet::new();
    for conn in 0..10 {
        let c = transmission(&s, &a)?;
        for i in 0..30 {
            let mut c = c.clone();
            flood.spawn(async move {
                c.status(pb::StatusRequest {
                    transmission_id: conn * 1000 + i + 1,
                })
                .await
            });
        }
    }
    // A's admitted calls hold every connection of the auth pool (4),
    // waiting on the lock; B's heartbeat is answered meanwhile (from the
    // cache: the pool has no connection to give).
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock' AND query LIKE '%retired_issuer%'";
    let mut saturated = false;
    for _ in 0..400 {
        if count(&s, waiting).await? >= 4 {
            saturated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(saturated, "A's calls never reached the database");
    heartbeat(&mut lb).await?;
    // A's calls beyond its 8 slots are refused without waiting for the
    // database: all but 8 come back while the lock is still held.
    let mut refused = 0;
    while refused < 300 - 8 {
        let done = tokio::time::timeout(ANSWERED, flood.join_next())
            .await
            .map_err(|_| {
                anyhow::anyhow!("only {refused} flood calls refused while the database was stuck")
            })?
            .expect("300 calls")?;
        let e = done.expect_err("no call of A can pass while its identity check waits");
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(e.message().contains("max_calls_per_agent"), "{e:?}");
        refused += 1;
    }
    lock.batch_execute("ROLLBACK").await?;
    // The 8 admitted ones finish once the database answers.
    while let Some(done) = tokio::time::timeout(ANSWERED, flood.join_next()).await? {
        let e = done?.expect_err("no such transmission");
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
    Ok(())
}

fn begin(run: Uuid) -> pb::BeginRequest {
    pb::BeginRequest {
        run_id: run.to_string(),
        job: "quota".into(),
        mode: pb::Mode::Append as i32,
        target: "t_quota".into(),
        columns: vec![pb::Column {
            name: "id".into(),
            source_type: "integer".into(),
            target_type: "integer".into(),
            pseudonymised: false,
        }],
        plan_version: "test".into(),
        ..Default::default()
    }
}

async fn count(s: &Stack, sql: &str) -> anyhow::Result<i64> {
    Ok(s.analytic_client().await?.query_one(sql, &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_begins_never_pass_the_open_quota() -> anyhow::Result<()> {
    let s = stack(
        "max_open_transmissions_per_agent = 64\nmax_calls_per_agent = 400\nmax_calls_per_connection = 64\nmax_streams_per_connection = 64",
    )
    .await?;
    let a = s.munis[0].clone();
    // The target exists first (its creation is serialised anyway).
    transmission(&s, &a)?.begin(begin(Uuid::now_v7())).await?;
    let mut begins = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let c = transmission(&s, &a)?;
        for _ in 0..30 {
            let mut c = c.clone();
            begins.spawn(async move { c.begin(begin(Uuid::now_v7())).await });
        }
    }
    let (mut opened, mut over) = (1, 0);
    while let Some(done) = begins.join_next().await {
        match done? {
            Ok(_) => opened += 1,
            Err(e) if e.code() == Code::ResourceExhausted => {
                assert!(
                    e.message().contains("max_open_transmissions_per_agent"),
                    "{e:?}"
                );
                over += 1;
            }
            // The load pool can be busy for longer than its acquire
            // timeout on a loaded machine: not opened either.
            Err(e) if e.code() == Code::Unavailable => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    let open = count(
        &s,
        "SELECT count(*) FROM transmissor.transmissions WHERE state = 'open'",
    )
    .await?;
    assert_eq!(open, opened, "answers and the database agree");
    assert!(open <= 64, "{open} open, {over} refused: the quota is 64");
    assert!(over > 0, "nothing was refused");
    Ok(())
}

/// Jobs that never began are recorded (so their failure shows) and count
/// against the agent's daily quota: a burst of them stops exactly there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_begun_jobs_never_pass_the_daily_quota() -> anyhow::Result<()> {
    let s = stack(
        "max_transmissions_per_agent_per_day = 20\nmax_calls_per_agent = 400\nmax_calls_per_connection = 64\nmax_streams_per_connection = 64",
    )
    .await?;
    let a = s.munis[0].clone();
    let mut aborts = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let c = transmission(&s, &a)?;
        for _ in 0..30 {
            let mut c = c.clone();
            aborts.spawn(async move {
                c.abort(pb::AbortRequest {
                    run_id: Uuid::now_v7().to_string(),
                    job: "quota".into(),
                    reason: "the query failed while being described".into(),
                    failed: true,
                    mode: pb::Mode::Append as i32,
                    target: "t_quota".into(),
                    plan_version: "test".into(),
                    ..Default::default()
                })
                .await
            });
        }
    }
    let (mut recorded, mut over) = (0, 0);
    while let Some(done) = aborts.join_next().await {
        match done? {
            Ok(_) => recorded += 1,
            Err(e) if e.code() == Code::ResourceExhausted => {
                assert!(
                    e.message().contains("max_transmissions_per_agent_per_day"),
                    "{e:?}"
                );
                over += 1;
            }
            Err(e) if e.code() == Code::Unavailable => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    let stored = count(&s, "SELECT count(*) FROM transmissor.transmissions").await?;
    assert_eq!(stored, recorded, "answers and the database agree");
    assert!(
        stored <= 20,
        "{stored} recorded, {over} refused: the quota is 20"
    );
    assert!(over > 0, "nothing was refused");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_digest_is_refused_and_nothing_big_is_stored() -> anyhow::Result<()> {
    let s = stack("").await?;
    let a = s.munis[0].clone();
    let mut c = transmission(&s, &a)?;
    let id = c
        .begin(begin(Uuid::now_v7()))
        .await?
        .into_inner()
        .transmission_id;
    c.put_batch(client::batch(id, 1, b"1\n", 1)).await?;
    let commit = |digest: String| pb::CommitRequest {
        transmission_id: id,
        total_batches: 1,
        total_rows: 1,
        digest,
        ..Default::default()
    };
    // 4 MiB of digest: refused from its length, the transmission untouched.
    let e = c.commit(commit("a".repeat(4 << 20))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().len() < 300, "{} bytes", e.message().len());
    // Not hex: refused the same way.
    let e = c.commit(commit("z".repeat(64))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM transmissor.transmissions WHERE state = 'open' AND error IS NULL"
        )
        .await?,
        1
    );
    // A well-formed wrong digest fails the transmission, with a short text.
    let e = c.commit(commit("0".repeat(64))).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        count(
            &s,
            "SELECT coalesce(max(octet_length(error)), 0)::bigint FROM transmissor.transmissions"
        )
        .await?
            < 1000
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_requests_are_bounded_per_municipality() -> anyhow::Result<()> {
    use transmissor_collector::run_requests::{self, MAX_PER_WINDOW, RunRequestError};
    let s = stack("").await?;
    let ibge = s.munis[0].ibge;
    let pool = s.collector_pool().await?;
    let plans =
        transmissor_collector::plans::PublishedPlans::load(pool.clone(), None, true).await?;
    let ask = |job: Option<&'static str>| {
        let (pool, plans) = (pool.clone(), plans.clone());
        async move { run_requests::request(&pool, &plans, ibge, job, "test").await }
    };
    let first = ask(None).await?;
    // The same request again while the first is pending: refused, named.
    match ask(None).await {
        Err(RunRequestError::AlreadyPending { id, .. }) => assert_eq!(id, first.id),
        other => panic!("{other:?}"),
    }
    // Concurrent requests for one job: one passes.
    let (x, y) = tokio::join!(ask(Some("cbo")), ask(Some("cbo")));
    assert!(x.is_ok() != y.is_ok(), "{x:?} / {y:?}");
    // Taken ones make room, up to the municipality's budget.
    let db = s.analytic_client().await?;
    let mut accepted = 2;
    while accepted < MAX_PER_WINDOW {
        db.execute(
            "UPDATE transmissor.run_requests SET taken_at = now() WHERE taken_at IS NULL",
            &[],
        )
        .await?;
        ask(None).await?;
        accepted += 1;
    }
    db.execute(
        "UPDATE transmissor.run_requests SET taken_at = now() WHERE taken_at IS NULL",
        &[],
    )
    .await?;
    match ask(Some("equipes")).await {
        Err(e @ RunRequestError::TooMany { .. }) => {
            assert!(e.to_string().contains("retry later"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // Another municipality is not affected.
    run_requests::request(&pool, &plans, s.munis[1].ibge, None, "test").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_flood_does_not_make_a_renewal_fail() -> anyhow::Result<()> {
    use transmissor_tests::identities::{enroll, plain_csr, renew, save};
    let mut s = Stack::with_options(
        &[A],
        StackOptions {
            enrollment: true,
            ..Default::default()
        },
    )
    .await?;
    s.start_collector_in_process().await?;
    let (key, csr) = plain_csr()?;
    let token = s.issue_token(A.0, Duration::from_secs(3600)).await?;
    let enrolled = enroll(&s, &token, &csr).await?;
    let (chain, keyf) = save(&s.dir, "a", &enrolled.certificate_chain_pem, &key)?;

    // The failure counters every enrollment writes first are stuck, and one
    // address floods with well-formed tokens that do not exist.
    let lock = s.analytic_client().await?;
    lock.batch_execute(
        "BEGIN; LOCK TABLE transmissor.enrollment_failures IN ACCESS EXCLUSIVE MODE",
    )
    .await?;
    let pin = transmissor_collector::ca::load(s.ca_dir.as_ref().expect("ca"))?.pin;
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let forged = transmissor_proto::token::Token::generate(A.0.parse()?, pin).to_string();
        let (endpoint, trust, csr) = (s.endpoint(), s.server_trust.clone(), csr.clone());
        flood.spawn(async move {
            transmissor_tests::identities::enroll_at(&endpoint, &trust, &forged, &csr).await
        });
    }
    // Enrollments are holding the database (waiting on the lock).
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    let mut held = false;
    for _ in 0..400 {
        if count(&s, waiting).await? >= 1 {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(held, "no enrollment reached the database");
    // A renewal (mutual TLS) still gets through.
    let (_, csr2) = plain_csr()?;
    let renewed = tokio::time::timeout(ANSWERED, renew(&s, (&chain, &keyf), &csr2)).await?;
    let renewed = renewed.map_err(|e| anyhow::anyhow!("renewal failed: {e:?}"))?;
    assert!(renewed.certificate_chain_pem.contains("BEGIN CERTIFICATE"));
    lock.batch_execute("ROLLBACK").await?;
    while let Some(done) = flood.join_next().await {
        let e = done?.expect_err("no token of the flood exists");
        assert!(
            matches!(e.code(), Code::PermissionDenied | Code::Unavailable),
            "{e:?}"
        );
    }
    s.stop_collector().await?;
    Ok(())
}
