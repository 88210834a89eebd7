//! Issue #11: the collector derives every municipality's health on its own
//! (a real collector, its evaluation pass on a one-second period), stores
//! the state and one history row per change, and the JSON API shows each
//! state; the API needs a session.
//!
//! The municipalities' facts are written straight into the control schema
//! (agents that never reported, went silent hours or weeks ago, a failed
//! run, a certificate about to expire, a planned job never run), so each
//! state is reached without waiting for real time to pass. Calendars,
//! weekends, holidays and anomalies are covered by the derivation's own
//! tests with an injected clock (`collector/src/monitor/derive_tests.rs`).

use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use transmissor_tests::http::request;
use transmissor_tests::operators::{add_operator, login, wait_http};
use transmissor_tests::pg::{free_port, wait_until};
use transmissor_tests::plans::{PlanJob, PlanKey, plan_toml};
use transmissor_tests::stack::{Stack, StackOptions};
use transmissor_tests::webhook::Webhook;

/// `[alerts]` with one generic-JSON webhook.
fn alerts_toml(url: &str) -> String {
    format!(
        "\n[alerts]\ndigest_threshold = 20\ndigest_window = \"2s\"\n\
         [[alerts.webhooks]]\nname = \"test\"\nurl = \"{url}\"\nformat = \"json\"\n"
    )
}

/// The states the default webhook alerts on.
const ALERTED: [&str; 5] = ["failing", "late", "missing", "offline", "degraded"];

/// `(ibge, name, expected overall state)`.
const CASES: [(&str, &str, &str); 8] = [
    ("3550308", "São Paulo", "ok"),
    ("3304557", "Rio de Janeiro", "never"),
    ("3106200", "Belo Horizonte", "offline"),
    ("5300108", "Brasília", "inactive"),
    ("4106902", "Curitiba", "failing"),
    ("4314902", "Porto Alegre", "degraded"),
    ("2927408", "Salvador", "late"),
    ("2304400", "Fortaleza", "missing"),
];

/// The facts behind each case.
const SEED: &str = include_str!("health/seed.sql");

async fn api(
    http: std::net::SocketAddr,
    trust: &std::path::Path,
    cookie: &str,
    path: &str,
) -> Result<(u16, Value)> {
    let r = request(http, "GET", path, &[("Cookie", cookie)], "", Some(trust)).await?;
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    Ok((r.status, v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_is_derived_stored_with_history_and_served() -> Result<()> {
    let http_port = free_port();
    let (hook, url) = Webhook::start().await?;
    let plan_keys = tempfile::tempdir()?;
    let key = PlanKey::generate(plan_keys.path(), "k1")?;
    let mut stack = Stack::with_options(
        &[],
        StackOptions {
            plans_extra: transmissor_tests::plans::collector_plan_keys(&[&key], None),
            collector_extra_toml: format!(
                "\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
                 [monitor]\nevaluate_every = \"1s\"\nlate_grace = \"1s\"\nmissing_after = \"6days\"\n{}",
                alerts_toml(&url)
            ),
            ..Default::default()
        },
    )
    .await?;
    let pool = stack.collector_pool().await?;
    sqlx::raw_sql(SEED).execute(&pool).await?;
    // Salvador and Fortaleza run a plan with a job due every minute.
    let plan = key.sign_plan(
        &stack.dir,
        "v1",
        &plan_toml(
            1,
            "[\"2927408\", \"2304400\"]",
            "2099-01-01T00:00:00Z",
            "health test",
            &[PlanJob {
                name: "visitas",
                target: "visitas",
                mode: "snapshot",
                sql: "SELECT 1 AS um",
                cron: "* * * * *",
                pec: None,
            }],
        ),
    )?;
    stack.publish_plan("v1", &plan)?;

    add_operator(&stack, "vera", "viewer", "senha-da-vera-123")?;
    stack.start_collector().await?;
    let http = format!("127.0.0.1:{http_port}").parse()?;
    let trust = stack.server_trust.clone();
    wait_http(http).await?;

    // No session: nothing to read, in the one error shape.
    let r = request(http, "GET", "/api/v1/municipalities", &[], "", Some(&trust)).await?;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.body.contains("\"code\":\"unauthenticated\""),
        "{}",
        r.body
    );
    let cookie = login(http, &trust, "vera", "senha-da-vera-123")
        .await?
        .expect("vera logs in");

    // Every municipality reaches its state.
    let settled = wait_until(Duration::from_secs(60), || async {
        let Ok((200, v)) = api(http, &trust, &cookie, "/api/v1/municipalities").await else {
            return false;
        };
        CASES.iter().all(|(ibge, _, want)| {
            v["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["ibge"] == *ibge && r["overall"] == *want)
        })
    })
    .await;
    let (_, all) = api(http, &trust, &cookie, "/api/v1/municipalities").await?;
    let summary: Vec<String> = all["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{} {} {}", r["ibge"], r["overall"], r["reasons"]))
        .collect();
    assert!(settled, "states never settled:\n{}", summary.join("\n"));
    assert_eq!(all["total"], 8);
    for (ibge, name, want) in CASES {
        // The state filter returns exactly that municipality, and its count.
        let (status, v) = api(
            http,
            &trust,
            &cookie,
            &format!("/api/v1/municipalities?state={want}"),
        )
        .await?;
        assert_eq!(status, 200);
        let rows = v["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 1, "{want}: {v:#}");
        assert_eq!(
            (rows[0]["ibge"].as_str(), rows[0]["name"].as_str()),
            (Some(ibge), Some(name))
        );
        let count = v["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .find(|c| c["state"] == want)
            .expect("every state is counted")["count"]
            .clone();
        assert_eq!(count, 1, "{want}");
        // Its reasons say why, and the page names them.
        let (status, detail) = api(
            http,
            &trust,
            &cookie,
            &format!("/api/v1/municipalities/{ibge}"),
        )
        .await?;
        assert_eq!(status, 200, "{detail:#}");
        let m = &detail["municipality"];
        assert_eq!(m["overall"], want);
        if want != "ok" {
            assert!(
                !m["reasons"].as_array().expect("reasons").is_empty(),
                "{want} without a reason: {m:#}"
            );
        }
        // The first evaluation is in the history, on every axis.
        let history = detail["history"].as_array().expect("history");
        assert!(
            history
                .iter()
                .any(|h| h["axis"] == "overall" && h["to"] == want && h["from"].is_null()),
            "{want}: {history:?}"
        );
    }
    // Kinds of reason, as typed values.
    let reason = |ibge: &str| {
        all["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["ibge"] == ibge)
            .map(|r| r["reasons"][0]["kind"].clone())
    };
    assert_eq!(reason("4106902"), Some("failing".into()));
    assert_eq!(reason("4314902"), Some("cert_expiring".into()));
    assert_eq!(reason("2927408"), Some("late".into()));
    assert_eq!(reason("2304400"), Some("missing".into()));
    let (_, curitiba) = api(http, &trust, &cookie, "/api/v1/municipalities/4106902").await?;
    assert!(
        curitiba["recent_errors"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("tb_cidadao")),
        "{curitiba:#}"
    );

    // A change of state is stored with its time and reason: Curitiba's
    // next run commits, and it goes back to ok.
    sqlx::raw_sql(
        "INSERT INTO transmissor.transmissions (ibge, agent_id, run_id, job, mode, target, columns, state, started_at, finished_at, rows)
         SELECT ibge, id, gen_random_uuid(), 'visitas', 'snapshot', 'visitas', '[]', 'committed', now(), now(), 1234
         FROM transmissor.agents WHERE ibge = '4106902'",
    )
    .execute(&pool)
    .await?;
    let recovered = wait_until(Duration::from_secs(60), || async {
        let Ok((200, v)) = api(
            http,
            &trust,
            &cookie,
            "/api/v1/municipalities/4106902/history",
        )
        .await
        else {
            return false;
        };
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| h["axis"] == "overall" && h["from"] == "failing" && h["to"] == "ok")
    })
    .await;
    let (_, history) = api(
        http,
        &trust,
        &cookie,
        "/api/v1/municipalities/4106902/history",
    )
    .await?;
    assert!(recovered, "no failing → ok transition: {history:#}");
    let back = &history["items"][0];
    assert_eq!(back["reason"], "back to ok", "{history:#}");
    assert_eq!(back["reason_pt_br"], "voltou a ok", "{history:#}");
    // Exactly one history row per change: a pass that changes nothing
    // writes nothing.
    let rows_now: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM transmissor.health_history WHERE ibge = '4106902'",
    )
    .fetch_one(&pool)
    .await?;
    let evaluated: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT evaluated_at FROM transmissor.health_evaluations")
            .fetch_one(&pool)
            .await?;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
                "SELECT evaluated_at FROM transmissor.health_evaluations",
            )
            .fetch_one(&pool)
            .await
            .is_ok_and(|at| at > evaluated + chrono::TimeDelta::seconds(2))
        })
        .await
    );
    let rows_later: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM transmissor.health_history WHERE ibge = '4106902'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(rows_now, rows_later);

    // The webhook got exactly one message per transition into an alerted
    // state (never and inactive are not alerted by default), and one for
    // Curitiba's recovery.
    let all_sent = wait_until(Duration::from_secs(30), || async {
        hook.received().len() >= 6
    })
    .await;
    let sent = hook.received();
    assert!(all_sent, "{sent:#?}");
    assert_eq!(sent.len(), 6, "{sent:#?}");
    for (ibge, _, want) in CASES.iter().filter(|(_, _, w)| ALERTED.contains(w)) {
        let got: Vec<&Value> = sent
            .iter()
            .filter(|m| m["ibge"] == *ibge && m["to"] == *want)
            .collect();
        assert_eq!(got.len(), 1, "{ibge} {want}: {sent:#?}");
        assert_eq!(got[0]["kind"], "transition");
    }
    assert!(
        sent.iter()
            .any(|m| m["ibge"] == "4106902" && m["from"] == "failing" && m["to"] == "ok"),
        "{sent:#?}"
    );

    // The other lists: agents, transmissions by state, failures, paging,
    // the OpenAPI document, and a clear refusal of a bad query.
    let (_, agents) = api(http, &trust, &cookie, "/api/v1/agents").await?;
    assert_eq!(agents.as_array().map(Vec::len), Some(8), "{agents:#}");
    let porto = agents
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["ibge"] == "4314902")
        .expect("porto alegre's agent");
    assert_eq!(porto["pec_version"], "5.3.21");
    assert!(porto["cert_not_after"].is_string());
    let (_, failed) = api(http, &trust, &cookie, "/api/v1/transmissions?state=failed").await?;
    let failed = failed["items"].as_array().expect("items").clone();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["ibge"], "4106902");
    let (_, page1) = api(http, &trust, &cookie, "/api/v1/transmissions?limit=2").await?;
    let before = page1["next_before"].as_i64().expect("a next page");
    let (_, page2) = api(
        http,
        &trust,
        &cookie,
        &format!("/api/v1/transmissions?limit=2&before={before}"),
    )
    .await?;
    assert!(
        page2["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|t| t["id"].as_i64() < Some(before))
    );
    let (status, bad) = api(http, &trust, &cookie, "/api/v1/transmissions?state=lost").await?;
    assert_eq!(status, 400);
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("lost"),
        "{bad:#}"
    );
    let (status, bad) = api(http, &trust, &cookie, "/api/v1/municipalities?colour=red").await?;
    assert_eq!(status, 400, "{bad:#}");
    assert_eq!(bad["error"]["code"], "bad_request");
    let (status, _) = api(http, &trust, &cookie, "/api/v1/municipalities/9999999").await?;
    assert_eq!(status, 404);
    let doc = request(http, "GET", "/api/v1/openapi.yaml", &[], "", Some(&trust)).await?;
    assert_eq!(doc.status, 200);
    for path in [
        "/api/v1/municipalities:",
        "/api/v1/municipalities/{ibge}/history:",
        "/api/v1/agents:",
        "/api/v1/transmissions:",
    ] {
        assert!(doc.body.contains(path), "{path} not documented");
    }

    // Gauges by state, no IBGE code as a label.
    // On the people's door /metrics needs a session.
    let anonymous = request(http, "GET", "/metrics", &[], "", Some(&trust)).await?;
    assert_eq!(anonymous.status, 401);
    let metrics = request(
        http,
        "GET",
        "/metrics",
        &[("Cookie", &cookie)],
        "",
        Some(&trust),
    )
    .await?;
    assert!(
        metrics
            .body
            .contains("transmissor_municipalities{state=\"missing\"} 1"),
        "{}",
        metrics.body
    );
    assert!(!metrics.body.contains("2304400"));
    stack.stop_collector().await?;
    Ok(())
}

/// A national outage is one digest, not one message per municipality.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_outage_is_one_digest() -> Result<()> {
    let http_port = free_port();
    let (hook, url) = Webhook::start().await?;
    let mut stack = Stack::with_options(
        &[],
        StackOptions {
            collector_extra_toml: format!(
                "\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n[monitor]\nevaluate_every = \"1s\"\n{}",
                alerts_toml(&url)
            ),
            ..Default::default()
        },
    )
    .await?;
    let pool = stack.collector_pool().await?;
    transmissor_tests::fleet::seed(&pool, 600, 3, &["visitas"]).await?;
    add_operator(&stack, "vera", "viewer", "senha-da-vera-123")?;
    stack.start_collector().await?;
    let http = format!("127.0.0.1:{http_port}").parse()?;
    let trust = stack.server_trust.clone();
    wait_http(http).await?;
    let cookie = login(http, &trust, "vera", "senha-da-vera-123")
        .await?
        .expect("vera logs in");
    let evaluated = wait_until(Duration::from_secs(60), || async {
        api(http, &trust, &cookie, "/api/v1/municipalities")
            .await
            .is_ok_and(|(s, v)| s == 200 && v["total"] == 600)
    })
    .await;
    assert!(evaluated);
    let (_, all) = api(http, &trust, &cookie, "/api/v1/municipalities").await?;
    let alerted = all["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| ALERTED.iter().any(|s| r["overall"] == *s))
        .count();
    assert!(
        alerted > 20,
        "the fleet's mix gives {alerted} alerted municipalities"
    );

    let got = wait_until(Duration::from_secs(60), || async {
        !hook.received().is_empty()
    })
    .await;
    assert!(got, "no digest");
    // Nothing else follows in later passes.
    let evaluated_at = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "SELECT evaluated_at FROM transmissor.health_evaluations",
        )
        .fetch_one(&pool)
        .await
        .ok()
    };
    let seen = evaluated_at().await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            evaluated_at().await > seen.map(|s| s + chrono::TimeDelta::seconds(3))
        })
        .await
    );
    let sent = hook.received();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["kind"], "digest", "{:#}", sent[0]);
    assert_eq!(sent[0]["count"], alerted, "{:#}", sent[0]);
    stack.stop_collector().await?;
    Ok(())
}
