//! Signed central plans, end to end with the real binaries: the offline
//! signer (`transmissor-plan`), `transmissor-collector plan publish`, and
//! agents in central mode fetching plans over mutual TLS.
//!
//! - A signed plan is accepted and run; a job whose PEC-version range
//!   excludes the source is skipped; the agent reports plan, PEC version and
//!   next runs to the collector.
//! - Tampered SQL, a wrong key, an unsigned plan, an expired plan, a plan
//!   for another municipality, the same version with other content and an
//!   older version are each refused, the previous plan keeps running, and
//!   the refusal is visible at the collector. Where the real collector would
//!   not serve such a plan, the test plays a compromised collector by
//!   writing the envelope into its tables.
//! - The collector stores only what verifies under `[plans] keys`: a
//!   tampered, foreign-key or unsigned plan is refused at publication.
//! - A key rotation signed by the root key is accepted; one signed by a plan
//!   key (served by a compromised collector) is refused.
//! - The collector refuses a `Begin` whose job, target or mode the plan
//!   published for that municipality does not define, and local jobs.
//! - The schedule: a missed slot is caught up at start, once; a run of a
//!   job never overlaps another run of it; `run --job NAME --now`.
//!
//! Operators' run requests are in `run_requests.rs`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tonic::Code;

use transmissor_proto::pb;
use transmissor_tests::client;
use transmissor_tests::pec::Scale;
use transmissor_tests::pg::wait_until;
use transmissor_tests::plans::{
    EQUIPES, LATER, PlanJob, PlanKey, agent_plan_section, collector_plan_keys, count,
    key_list_toml, plan_toml, run_now, spawn_service, wait_log,
};
use transmissor_tests::procs::bin;
use transmissor_tests::stack::{Job, Municipality, Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("3304557", "Rio de Janeiro");

fn central(
    stack: &Stack,
    m: &Municipality,
    keys: &[&PlanKey],
    root: Option<&PlanKey>,
) -> Result<std::path::PathBuf> {
    stack.agent_config(m, &[], &agent_plan_section(keys, root))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_plans_run_and_bad_ones_never_replace_them() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let root = PlanKey::generate_root(keys.path(), "root")?;
    let k1 = PlanKey::generate(keys.path(), "k1")?;
    let k2 = PlanKey::generate(keys.path(), "k2")?;
    let evil = PlanKey::generate(keys.path(), "evil")?;
    let mut stack = Stack::with_options(
        &[A, B],
        StackOptions {
            plans_required: true,
            plans_extra: collector_plan_keys(&[&k1], Some(&root)),
            ..Default::default()
        },
    )
    .await?;
    let (ma, mb) = (stack.munis[0].clone(), stack.munis[1].clone());
    stack.load_pec(&ma, 1, &Scale::tiny()).await?;
    stack.load_pec(&mb, 2, &Scale::tiny()).await?;
    stack.start_collector().await?;
    let dir = stack.dir.clone();
    let cfg = central(&stack, &ma, &[&k1], Some(&root))?;

    // `check` names the mode.
    let out = Command::new(bin("transmissor-agent")?)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mode: central"), "{text}");

    // v1: accepted and run; the job for a newer PEC is skipped here (5.5.28).
    let v1_text = plan_toml(
        1,
        "\"all\"",
        LATER,
        "first",
        &[
            EQUIPES,
            PlanJob {
                name: "novo",
                target: "plan_novo",
                mode: "snapshot",
                sql: "SELECT co_seq_dim_cbo, nu_cbo, no_cbo, st_registro_valido, ds_filtro FROM tb_dim_cbo",
                cron: "30 2 * * 1-5",
                pec: Some("{ min = \"6.0\" }"),
            },
            PlanJob {
                name: "atual",
                target: "plan_atual",
                mode: "append",
                sql: "SELECT co_seq_dim_tempo FROM tb_dim_tempo WHERE nu_ano = 2025",
                cron: "0 4 * * *",
                pec: Some("{ min = \"5.5.28\", below = \"5.6\" }"),
            },
        ],
    );
    let v1 = k1.sign_plan(&dir, "v1", &v1_text)?;
    let published = stack.publish_plan("v1", &v1)?;
    assert!(published.contains("plan 1 published"), "{published}");
    stack.wait_served(&ma, &v1).await?;
    let (ok, out) = run_now(&cfg, &[])?;
    assert!(ok, "{out}");
    assert!(
        out.contains("novo") && out.contains("skipped: needs PEC"),
        "{out}"
    );
    let src: i64 = stack
        .source
        .connect(&ma.db)
        .await?
        .query_one("SELECT count(*) FROM tb_dim_equipe", &[])
        .await?
        .get(0);
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM analytic.plan_equipes WHERE _ibge = '3550308'"
        )
        .await?,
        src
    );
    assert!(
        count(&stack, "SELECT count(*) FROM analytic.plan_atual").await? > 0,
        "the job in its PEC range ran"
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'plan_novo'"
        )
        .await?,
        0,
        "the job outside its PEC range never reached the collector"
    );
    let state = stack
        .agent_plan_state(&ma, |s| s.plan_version == Some(1))
        .await?;
    assert_eq!(state.pec_version.as_deref(), Some("5.5.28"));
    assert_eq!(state.job_source.as_deref(), Some("plan"));
    assert_eq!(state.plan_refusal, None);
    assert!(
        state.next_runs.as_deref().unwrap_or("").contains("equipes"),
        "{state:?}"
    );
    let runs_before = count(
        &stack,
        "SELECT count(*) FROM transmissor.transmissions WHERE state = 'committed'",
    )
    .await?;

    // Each bad plan: served, refused, v1 keeps running, refusal reported.
    let mut round = 0;
    // Tampered SQL: the collector refuses to store it; a compromised one
    // serves it anyway.
    let v2 = k1.sign_plan(
        &dir,
        "v2",
        &plan_toml(2, "\"all\"", LATER, "second", &[EQUIPES]),
    )?;
    let tampered = String::from_utf8(v2.clone())?
        .replace("FROM tb_dim_equipe", "FROM tb_dim_sexo")
        .into_bytes();
    assert_ne!(tampered, v2);
    let err = stack
        .publish_plan("v2-tampered", &tampered)
        .unwrap_err()
        .to_string();
    assert!(err.contains("altered or forged"), "{err}");
    stack.serve_raw_plan(&tampered).await?;
    stack.wait_served(&ma, &tampered).await?;
    refused(&stack, &cfg, &mut round, "altered or forged").await?;
    // Signed by a key the agent does not pin.
    let v3 = evil.sign_plan(
        &dir,
        "v3",
        &plan_toml(3, "\"all\"", LATER, "evil", &[EQUIPES]),
    )?;
    let err = stack.publish_plan("v3", &v3).unwrap_err().to_string();
    assert!(err.contains("not trusted"), "{err}");
    stack.serve_raw_plan(&v3).await?;
    stack.wait_served(&ma, &v3).await?;
    refused(&stack, &cfg, &mut round, "unknown key").await?;
    // Not signed at all (the real collector refuses to publish it).
    let bare = plan_toml(4, "\"all\"", LATER, "bare", &[EQUIPES]).into_bytes();
    let err = stack.publish_plan("v4", &bare).unwrap_err().to_string();
    assert!(err.contains("not") && err.contains("signed"), "{err}");
    stack.serve_raw_plan(&bare).await?;
    stack.wait_served(&ma, &bare).await?;
    refused(&stack, &cfg, &mut round, "not signed").await?;
    // Expired.
    let v5 = k1.sign_plan(
        &dir,
        "v5",
        &plan_toml(5, "\"all\"", "2026-01-02T00:00:00Z", "expired", &[EQUIPES]),
    )?;
    stack.serve_raw_plan(&v5).await?;
    stack.wait_served(&ma, &v5).await?;
    refused(&stack, &cfg, &mut round, "expired").await?;
    // For another municipality only.
    let v6 = k1.sign_plan(
        &dir,
        "v6",
        &plan_toml(6, "[\"3304557\"]", LATER, "rio", &[EQUIPES]),
    )?;
    stack.serve_raw_plan(&v6).await?;
    stack.wait_served(&ma, &v6).await?;
    refused(&stack, &cfg, &mut round, "not for municipality 3550308").await?;
    // The version it runs, with other content.
    let v1b = k1.sign_plan(
        &dir,
        "v1b",
        &plan_toml(1, "\"all\"", LATER, "other", &[EQUIPES]),
    )?;
    stack.serve_raw_plan(&v1b).await?;
    stack.wait_served(&ma, &v1b).await?;
    refused(
        &stack,
        &cfg,
        &mut round,
        "already accepted with other content",
    )
    .await?;
    // Every refused round still ran v1's job, under plan 1.
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM transmissor.transmissions WHERE state = 'committed' \
             AND plan_version <> 'plan:1'"
        )
        .await?,
        0
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM transmissor.transmissions WHERE state = 'committed'"
        )
        .await?,
        runs_before + round
    );

    // v7 is accepted; then the older v1 is refused.
    let v7 = k1.sign_plan(
        &dir,
        "v7",
        &plan_toml(7, "\"all\"", LATER, "seventh", &[EQUIPES]),
    )?;
    stack.serve_raw_plan(&v7).await?;
    stack.wait_served(&ma, &v7).await?;
    let (ok, out) = run_now(&cfg, &[])?;
    assert!(ok, "{out}");
    stack
        .agent_plan_state(&ma, |s| s.plan_version == Some(7))
        .await?;
    stack.serve_raw_plan(&v1).await?;
    stack.wait_served(&ma, &v1).await?;
    let (ok, out) = run_now(&cfg, &[])?;
    assert!(ok, "{out}");
    let s = stack
        .agent_plan_state(&ma, |s| {
            s.plan_refusal
                .as_deref()
                .is_some_and(|r| r.contains("older than version 7"))
        })
        .await?;
    assert_eq!(s.plan_version, Some(7));

    // Key rotation: a key list signed by the root key moves trust to k2; a
    // plan signed by k2 is accepted (the real collector publishes both; it
    // takes plan versions above every row, the forged ones included).
    let kl1 = root.sign_key_list(&dir, 1, &[&k2])?;
    let out = stack.publish_plan("keys-1", &kl1)?;
    assert!(out.contains("plan-key list 1 published"), "{out}");
    let v8 = k2.sign_plan(
        &dir,
        "v8",
        &plan_toml(20, "\"all\"", LATER, "rotated", &[EQUIPES]),
    )?;
    stack.publish_plan("v8", &v8)?;
    stack.wait_served(&ma, &v8).await?;
    let (ok, out) = run_now(&cfg, &[])?;
    assert!(ok, "{out}");
    let s = stack
        .agent_plan_state(&ma, |s| s.plan_version == Some(20))
        .await?;
    assert_eq!(s.key_list_serial, Some(1));
    assert_eq!(s.plan_refusal, None);
    // A key list signed by a plan key (k2, stolen), not the root, is refused
    // by the collector; served anyway by a compromised one, the agent
    // refuses it, and the plan signed by the key it names.
    let kl2 = transmissor_plan::sign(
        transmissor_plan::Kind::KeyList,
        key_list_toml(2, &[&evil], "").as_bytes(),
        &transmissor_plan::keys::read_signing_key(&k2.file)?,
    );
    let err = stack.publish_plan("keys-2", &kl2).unwrap_err().to_string();
    assert!(err.contains("root key"), "{err}");
    stack.serve_raw_key_list(2, &kl2).await?;
    let v9 = evil.sign_plan(
        &dir,
        "v9",
        &plan_toml(21, "\"all\"", LATER, "takeover", &[EQUIPES]),
    )?;
    let err = stack.publish_plan("v9", &v9).unwrap_err().to_string();
    assert!(err.contains("not trusted"), "{err}");
    stack.serve_raw_plan(&v9).await?;
    stack.wait_served(&ma, &v9).await?;
    let (ok, out) = run_now(&cfg, &[])?;
    assert!(ok, "{out}");
    let s = stack
        .agent_plan_state(&ma, |s| {
            s.plan_refusal.as_deref().is_some_and(|r| {
                r.contains("plan-key list 2 refused") && r.contains("plan 21 refused")
            })
        })
        .await?;
    assert_eq!((s.plan_version, s.key_list_serial), (Some(20), Some(1)));

    // `agent list` shows PEC version and plan state.
    let out = Command::new(bin("transmissor-collector")?)
        .args(["agent", "list", "--config"])
        .arg(&stack.collector_config)
        .output()?;
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("5.5.28")
            && list.contains("20 applied")
            && list.contains("PLAN REFUSED: plan-key list 2 refused"),
        "{list}"
    );

    // The collector refuses Begins the published plans do not define.
    let mut tx = client::transmission(
        &stack.endpoint(),
        &stack.server_trust,
        Some((&mb.cert, &mb.key)),
    )?;
    let begin = |plan: u64, job: &str, target: &str, mode: pb::Mode| pb::BeginRequest {
        run_id: uuid::Uuid::now_v7().to_string(),
        job: job.into(),
        mode: mode as i32,
        target: target.into(),
        columns: vec![pb::Column {
            name: "x".into(),
            source_type: "integer".into(),
            target_type: "integer".into(),
            pseudonymised: false,
        }],
        plan,
        ..Default::default()
    };
    for (req, expect) in [
        (
            begin(0, "equipes", "plan_equipes", pb::Mode::Snapshot),
            "does not come from a signed plan",
        ),
        (
            begin(20, "equipes", "tb_fat_cidadao_pec", pb::Mode::Snapshot),
            "loads \"plan_equipes\"",
        ),
        (
            begin(20, "equipes", "plan_equipes", pb::Mode::Append),
            "is snapshot, not append",
        ),
        (
            begin(20, "outro", "plan_equipes", pb::Mode::Snapshot),
            "is not in plan 20",
        ),
        (
            begin(99, "equipes", "plan_equipes", pb::Mode::Snapshot),
            "plan 99 is not published",
        ),
    ] {
        let err = tx.begin(req).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(
            err.message().contains(expect),
            "{expect:?}: {}",
            err.message()
        );
    }
    let v10 = k2.sign_plan(
        &dir,
        "v10",
        &plan_toml(22, "[\"3550308\"]", LATER, "sp", &[EQUIPES]),
    )?;
    stack.publish_plan("v10", &v10)?;
    let err = tx
        .begin(begin(22, "equipes", "plan_equipes", pb::Mode::Snapshot))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("not for municipality 3304557"),
        "{}",
        err.message()
    );

    // An agent with local jobs: refused by a collector that requires plans.
    let local = stack.agent_config(
        &mb,
        &[Job::new(
            "equipes",
            "snapshot",
            "plan_equipes",
            "SELECT * FROM tb_dim_equipe",
        )],
        "",
    )?;
    let (ok, out) = run_now(&local, &[])?;
    assert!(
        !ok && out.contains("does not come from a signed plan"),
        "{out}"
    );
    Ok(())
}

/// One refusal round: the agent runs, v1's job still commits under plan 1,
/// and the collector holds the refusal naming `expect`.
async fn refused(stack: &Stack, cfg: &Path, round: &mut i64, expect: &str) -> Result<()> {
    *round += 1;
    let (ok, out) = run_now(cfg, &["equipes"])?;
    assert!(ok, "round {round}: v1's job still runs: {out}");
    let state = stack
        .agent_plan_state(&stack.munis[0], |s| {
            s.plan_refusal
                .as_deref()
                .is_some_and(|r| r.contains(expect))
        })
        .await
        .with_context(|| format!("round {round}: expected a refusal with {expect:?}"))?;
    assert_eq!(state.plan_version, Some(1), "round {round}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_slot_caught_up_once_and_runs_never_overlap() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let k1 = PlanKey::generate(keys.path(), "k1")?;
    let mut stack = Stack::with_options(
        &[A],
        StackOptions {
            plans_required: true,
            plans_extra: collector_plan_keys(&[&k1], None),
            ..Default::default()
        },
    )
    .await?;
    let m = stack.munis[0].clone();
    stack.load_pec(&m, 1, &Scale::tiny()).await?;
    stack.start_collector().await?;
    let dir = stack.dir.clone();
    let cfg = central(&stack, &m, &[&k1], None)?;
    // Yearly on 1 January: its latest slot has passed, the next is far off.
    let slow = PlanJob {
        name: "lento",
        target: "plan_lento",
        mode: "append",
        // About 6 s: long enough for a second run to meet it.
        sql: "SELECT g FROM generate_series(1, 12) g CROSS JOIN LATERAL (SELECT pg_sleep(0.5) WHERE g > 0) s",
        cron: "0 3 1 1 *",
        pec: None,
    };
    let v1 = k1.sign_plan(&dir, "v1", &plan_toml(1, "\"all\"", LATER, "slow", &[slow]))?;
    stack.publish_plan("v1", &v1)?;
    stack.wait_served(&m, &v1).await?;

    // `run --job NAME --now` fetches the plan and runs the job.
    let (ok, out) = run_now(&cfg, &["lento"])?;
    assert!(
        ok && out.contains("lento") && out.contains("committed"),
        "{out}"
    );
    let (ok, out) = run_now(&cfg, &["nao_existe"])?;
    assert!(!ok && out.contains("not in plan 1"), "{out}");
    let committed = |n: i64| {
        let stack = &stack;
        async move {
            count(
                stack,
                "SELECT count(*) FROM transmissor.transmissions WHERE state = 'committed'",
            )
            .await
            .is_ok_and(|c| c == n)
        }
    };
    assert!(committed(1).await);

    // The agent was off since before this year's slot: the ledger says it
    // has known the job since December and never completed a slot.
    let state = dir.join(format!("agent-{}", m.ibge)).join("state");
    let ledger = state.join("plan").join("schedule.json");
    std::fs::write(
        &ledger,
        r#"{"jobs": {"lento": {"known_since": "2025-12-01T00:00:00Z"}}}"#,
    )?;
    let mut daemon = spawn_service(&cfg, &dir.join("daemon-1.log"))?;
    // Started: it catches up the missed slot, once.
    wait_log(&daemon, "snapshot opened").await?;
    assert!(
        daemon.log_text().contains("catch_up=1"),
        "{}",
        daemon.log_text()
    );
    // While it runs, a run of the same job by hand is left out.
    let (ok, out) = run_now(&cfg, &["lento"])?;
    assert!(!ok && out.contains("PENDING: already running"), "{out}");
    assert!(
        wait_until(Duration::from_secs(60), || committed(2)).await,
        "the catch-up run did not commit:\n{}",
        daemon.log_text()
    );
    // This year's slot (1 January, 03:00 in São Paulo = 06:00 UTC) is done.
    let now = chrono::Utc::now();
    let this_year = chrono::NaiveDate::from_ymd_opt(chrono::Datelike::year(&now), 1, 1)
        .and_then(|d| d.and_hms_opt(6, 0, 0))
        .context("1 January")?
        .and_utc();
    let slot = if now >= this_year {
        this_year
    } else {
        this_year - chrono::Duration::days(365)
    };
    // The ledger is written just after the commit is seen.
    let done = format!("\"done_slot\": \"{}\"", slot.format("%Y-%m-%dT%H:%M:%SZ"));
    assert!(
        wait_until(Duration::from_secs(30), || async {
            std::fs::read_to_string(&ledger).is_ok_and(|t| t.contains(&done))
        })
        .await,
        "{}",
        std::fs::read_to_string(&ledger)?
    );
    let status = daemon.terminate(Duration::from_secs(30)).await?;
    assert!(status.success(), "{}", daemon.log_text());

    // Restarted: that slot is done; nothing to catch up.
    let mut daemon = spawn_service(&cfg, &dir.join("daemon-2.log"))?;
    wait_log(&daemon, "schedule ready").await?;
    assert!(
        daemon.log_text().contains("catch_up=0"),
        "{}",
        daemon.log_text()
    );
    daemon.terminate(Duration::from_secs(30)).await?;
    assert!(committed(2).await, "no run after the restart");
    Ok(())
}

/// With `[plans] keys`, `plan publish` checks what agents will check, so a
/// mistake is caught at the centre; it follows published key lists too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_checks_signatures_when_the_collector_pins_the_keys() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let root = PlanKey::generate_root(keys.path(), "root")?;
    let k1 = PlanKey::generate(keys.path(), "k1")?;
    let k2 = PlanKey::generate(keys.path(), "k2")?;
    let evil = PlanKey::generate(keys.path(), "evil")?;
    let stack = Stack::with_options(
        &[A],
        StackOptions {
            plans_required: true,
            plans_extra: collector_plan_keys(&[&k1], Some(&root)),
            ..Default::default()
        },
    )
    .await?;
    let dir = stack.dir.clone();
    let refused = |name: &str, envelope: &[u8], expect: &str| {
        let err = stack.publish_plan(name, envelope).unwrap_err().to_string();
        assert!(err.contains(expect), "{name}: {err}");
    };
    refused(
        "evil",
        &evil.sign_plan(
            &dir,
            "evil",
            &plan_toml(1, "\"all\"", LATER, "x", &[EQUIPES]),
        )?,
        "not trusted",
    );
    let v2 = k1.sign_plan(&dir, "v2", &plan_toml(2, "\"all\"", LATER, "x", &[EQUIPES]))?;
    let tampered = String::from_utf8(v2.clone())?
        .replace("tb_dim_equipe", "tb_dim_sexo")
        .into_bytes();
    refused("tampered", &tampered, "altered or forged");
    assert!(stack.publish_plan("v2", &v2)?.contains("plan 2 published"));
    refused(
        "v1",
        &k1.sign_plan(&dir, "v1", &plan_toml(1, "\"all\"", LATER, "x", &[EQUIPES]))?,
        "not above the newest published version 2",
    );
    // Versions cannot jump to the maximum, nor by more than a million.
    let max = plan_toml(2, "\"all\"", LATER, "x", &[EQUIPES])
        .replace("version = 2\n", "version = 9223372036854775807\n");
    refused(
        "max",
        &transmissor_plan::sign(
            transmissor_plan::Kind::Plan,
            max.as_bytes(),
            &transmissor_plan::keys::read_signing_key(&k1.file)?,
        ),
        "at most 9007199254740992",
    );
    refused(
        "far",
        &k1.sign_plan(
            &dir,
            "far",
            &plan_toml(1_000_003, "\"all\"", LATER, "x", &[EQUIPES]),
        )?,
        "jumps more than 1000000 above version 2",
    );
    // A key list signed by a plan key is refused; by the root key, k2's
    // plans publish and k1's do not.
    let by_plan_key = transmissor_plan::sign(
        transmissor_plan::Kind::KeyList,
        transmissor_tests::plans::key_list_toml(1, &[&k2], "").as_bytes(),
        &transmissor_plan::keys::read_signing_key(&k1.file)?,
    );
    refused("keys-by-k1", &by_plan_key, "root key");
    stack.publish_plan("keys-1", &root.sign_key_list(&dir, 1, &[&k2])?)?;
    let v3 = k2.sign_plan(&dir, "v3", &plan_toml(3, "\"all\"", LATER, "x", &[EQUIPES]))?;
    assert!(stack.publish_plan("v3", &v3)?.contains("plan 3 published"));
    refused(
        "v4",
        &k1.sign_plan(&dir, "v4", &plan_toml(4, "\"all\"", LATER, "x", &[EQUIPES]))?,
        "not trusted",
    );
    Ok(())
}
