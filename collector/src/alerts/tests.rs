//! The notifier against a real HTTP server (axum on 127.0.0.1:0) that
//! records what it accepts, and the policy with the time passed in.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::policy::{Kind, Now, Out, Policy, Rules};
use super::*;
use crate::monitor::Overall;

// --- the recording server ---------------------------------------------------

#[derive(Default)]
struct Recorder {
    /// Bodies answered with 200, in order.
    accepted: Mutex<Vec<Value>>,
    /// Every POST, whatever the answer.
    attempts: AtomicUsize,
    /// Answers to give before answering 200 (status, Retry-After).
    script: Mutex<VecDeque<(StatusCode, Option<&'static str>)>>,
}

impl Recorder {
    fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().unwrap().clone()
    }
}

async fn hook(State(rec): State<Arc<Recorder>>, body: Bytes) -> Response {
    rec.attempts.fetch_add(1, Ordering::SeqCst);
    let scripted = rec.script.lock().unwrap().pop_front();
    match scripted {
        Some((status, retry_after)) => {
            let mut resp = (status, "scripted").into_response();
            if let Some(v) = retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(v));
            }
            resp
        }
        None => {
            let value: Value = serde_json::from_slice(&body).expect("a JSON body");
            rec.accepted.lock().unwrap().push(value);
            (StatusCode::OK, "ok").into_response()
        }
    }
}

async fn server(script: &[(StatusCode, Option<&'static str>)]) -> (String, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    rec.script.lock().unwrap().extend(script.iter().copied());
    let app = axum::Router::new()
        .route("/hook/secret-token", axum::routing::post(hook))
        .with_state(rec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook/secret-token"), rec)
}

/// Polls `done` every 10 ms until it holds; fails after 30 s with `what`.
async fn poll(what: impl Fn() -> String, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 30s: {}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls until the server has accepted `n` messages.
async fn wait_for(rec: &Recorder, n: usize) {
    let count = || rec.accepted.lock().unwrap().len();
    poll(
        || format!("{n} messages expected, got {}", count()),
        || count() >= n,
    )
    .await;
}

/// Stops the notifier and waits for its flush: after this, nothing more
/// will arrive, so counts are exact.
async fn stop(token: CancellationToken, task: tokio::task::JoinHandle<()>) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the notifier stops")
        .unwrap();
}

fn config(url: &str, format: &str, global: &str, webhook: &str) -> AlertsConfig {
    let text = format!(
        r#"
dashboard_url = "https://central.example"
{global}
[[webhooks]]
name = "test-hook"
url = "{url}"
format = "{format}"
retry_initial = "10ms"
retry_max = "40ms"
timeout = "10s"
{webhook}
"#
    );
    toml::from_str(&text).unwrap()
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 13, minute, 0).unwrap()
}

fn event(ibge: &str, from: Option<Overall>, to: Overall) -> AlertEvent {
    AlertEvent {
        ibge: ibge.into(),
        name: "São Paulo".into(),
        uf: "SP".into(),
        from,
        to,
        at: at(0),
        reason: format!("now {to}"),
        reason_pt_br: format!("agora {}", to.pt_br()),
    }
}

fn outage(n: usize) -> Vec<AlertEvent> {
    let ufs = ["SP", "MG", "BA"];
    (0..n)
        .map(|i| AlertEvent {
            ibge: format!("{}", 1_100_000 + i),
            name: format!("Município {i}"),
            uf: ufs[i % 3].into(),
            from: Some(Overall::Ok),
            to: Overall::Offline,
            at: at(1),
            reason: "no heartbeat since 13:00".into(),
            reason_pt_br: "sem heartbeat desde 13:00".into(),
        })
        .collect()
}

/// ok → failing → late → ok, one pass each.
fn three_passes(alerts: &Alerts) {
    alerts.notify(vec![event("3550308", Some(Overall::Ok), Overall::Failing)]);
    alerts.notify(vec![event(
        "3550308",
        Some(Overall::Failing),
        Overall::Late,
    )]);
    alerts.notify(vec![event("3550308", Some(Overall::Late), Overall::Ok)]);
}

// --- end to end --------------------------------------------------------------

#[tokio::test]
async fn alerts_one_slack_message_per_transition() {
    let (url, rec) = server(&[]).await;
    let token = CancellationToken::new();
    let (alerts, task) = Alerts::spawn(config(&url, "slack", "", ""), token.clone());
    three_passes(&alerts);
    wait_for(&rec, 3).await;
    stop(token, task).await;

    let got = rec.accepted();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(
        got[0]["text"],
        "🔴 São Paulo/SP (3550308): com falha — failing (era: ok)"
    );
    let a = &got[0]["attachments"][0];
    assert_eq!(a["color"], "#d92d20");
    assert_eq!(a["title_link"], "https://central.example/m/3550308");
    assert_eq!(a["ts"], at(0).timestamp());
    assert!(a["text"].as_str().unwrap().contains("agora com falha"));
    assert!(a["fields"].as_array().unwrap().len() >= 3);
    assert_eq!(
        got[1]["text"],
        "🟠 São Paulo/SP (3550308): atrasado — late (era: com falha)"
    );
    assert_eq!(
        got[2]["text"],
        "✅ São Paulo/SP (3550308): voltou ao normal — back to ok (era: atrasado)"
    );
    let stats = alerts.stats();
    assert_eq!((stats.sent(), stats.failed(), stats.digests()), (3, 0, 0));
}

#[tokio::test]
async fn alerts_one_json_message_per_transition() {
    let (url, rec) = server(&[]).await;
    let token = CancellationToken::new();
    let (alerts, task) = Alerts::spawn(config(&url, "json", "", ""), token.clone());
    three_passes(&alerts);
    wait_for(&rec, 3).await;
    stop(token, task).await;

    let got = rec.accepted();
    assert_eq!(got.len(), 3, "{got:#?}");
    let steps: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap(),
                m["from"].as_str().unwrap(),
                m["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("transition", "ok", "failing"),
            ("transition", "failing", "late"),
            ("transition", "late", "ok"),
        ]
    );
    let m = &got[0];
    assert_eq!(m["ibge"], "3550308");
    assert_eq!(m["name"], "São Paulo");
    assert_eq!(m["uf"], "SP");
    assert_eq!(m["at"], "2026-12-01T13:00:00Z");
    assert_eq!(m["reason"], "now failing");
    assert_eq!(m["reason_pt_br"], "agora com falha");
    assert_eq!(m["url"], "https://central.example/m/3550308");
}

#[tokio::test]
async fn alerts_mass_outage_is_one_digest() {
    for format in ["json", "slack"] {
        let (url, rec) = server(&[]).await;
        let token = CancellationToken::new();
        let cfg = config(&url, format, "digest_window = \"1s\"", "");
        let (alerts, task) = Alerts::spawn(cfg, token.clone());
        alerts.notify(outage(300));
        wait_for(&rec, 1).await;
        stop(token, task).await;

        let got = rec.accepted();
        assert_eq!(got.len(), 1, "{format}: {got:#?}");
        let d = &got[0];
        if format == "json" {
            assert_eq!(d["kind"], "digest");
            assert_eq!(d["count"], 300);
            assert_eq!(d["transitions"], 300);
            assert_eq!(d["by_state"]["offline"], 300);
            assert_eq!(
                (&d["by_uf"]["SP"], &d["by_uf"]["MG"], &d["by_uf"]["BA"]),
                (&Value::from(100), &Value::from(100), &Value::from(100))
            );
            assert_eq!(d["municipalities"].as_array().unwrap().len(), DIGEST_LISTED);
            assert_eq!(d["municipalities"][0]["ibge"], "1100000");
            assert_eq!(d["from"], "2026-12-01T13:01:00Z");
        } else {
            let text = d["text"].as_str().unwrap();
            assert!(text.contains("Resumo: 300 alertas"), "{text}");
            let listed = d["attachments"][2]["text"].as_str().unwrap();
            assert!(listed.contains("e mais 280"), "{listed}");
        }
        let stats = alerts.stats();
        assert_eq!((stats.sent(), stats.digests()), (1, 1));
    }
}

#[tokio::test]
async fn alerts_retry_server_errors_then_deliver_once() {
    let (url, rec) = server(&[
        (StatusCode::SERVICE_UNAVAILABLE, None),
        (StatusCode::TOO_MANY_REQUESTS, Some("0")),
    ])
    .await;
    let token = CancellationToken::new();
    let (alerts, task) = Alerts::spawn(config(&url, "json", "", ""), token.clone());
    alerts.notify(vec![event("3550308", Some(Overall::Ok), Overall::Missing)]);
    wait_for(&rec, 1).await;
    stop(token, task).await;

    assert_eq!(rec.accepted().len(), 1);
    assert_eq!(rec.attempts.load(Ordering::SeqCst), 3);
    let stats = alerts.stats();
    assert_eq!((stats.sent(), stats.retries(), stats.failed()), (1, 2, 0));
}

#[tokio::test]
async fn alerts_client_error_is_not_retried() {
    let (url, rec) = server(&[(StatusCode::BAD_REQUEST, None)]).await;
    let token = CancellationToken::new();
    let (alerts, task) = Alerts::spawn(config(&url, "slack", "", ""), token.clone());
    alerts.notify(vec![event("3550308", Some(Overall::Ok), Overall::Failing)]);
    let stats = alerts.stats();
    poll(|| "no failure seen".into(), || stats.failed() > 0).await;
    stop(token, task).await;
    assert_eq!(rec.attempts.load(Ordering::SeqCst), 1);
    assert!(rec.accepted().is_empty());
    assert_eq!((stats.sent(), stats.retries(), stats.failed()), (0, 0, 1));
}

#[tokio::test]
async fn alerts_exhausted_attempts_give_up() {
    let (url, rec) = server(&[(StatusCode::BAD_GATEWAY, None); 5]).await;
    let token = CancellationToken::new();
    let cfg = config(&url, "json", "", "max_attempts = 2");
    let (alerts, task) = Alerts::spawn(cfg, token.clone());
    alerts.notify(vec![event("3550308", Some(Overall::Ok), Overall::Failing)]);
    let stats = alerts.stats();
    poll(|| "no failure seen".into(), || stats.failed() > 0).await;
    stop(token, task).await;
    assert_eq!(rec.attempts.load(Ordering::SeqCst), 2);
    assert_eq!((stats.sent(), stats.retries(), stats.failed()), (0, 1, 1));
}

/// Reminders arrive while the state lasts (the exact cadence is checked
/// on the policy with the time passed in, below).
#[tokio::test]
async fn alerts_reminders_reach_the_webhook() {
    let (url, rec) = server(&[]).await;
    let token = CancellationToken::new();
    // Below the validated minimum on purpose: `spawn` takes it as given.
    let cfg = config(
        &url,
        "json",
        "digest_threshold = 1000\nmax_messages_per_minute = 1000",
        "reminder_every = \"100ms\"",
    );
    let (alerts, task) = Alerts::spawn(cfg, token.clone());
    alerts.notify(vec![event("3550308", Some(Overall::Ok), Overall::Offline)]);
    wait_for(&rec, 3).await;
    stop(token, task).await;

    let got = rec.accepted();
    assert_eq!(got[0]["kind"], "transition");
    assert!(
        got[1..]
            .iter()
            .all(|m| m["to"] == "offline" && m["ibge"] == "3550308" && m["kind"] == "reminder"),
        "{got:#?}"
    );
}

#[tokio::test]
async fn alerts_disabled_without_webhooks() {
    let token = CancellationToken::new();
    let (alerts, task) = Alerts::spawn(AlertsConfig::default(), token.clone());
    alerts.notify(outage(3));
    stop(token, task).await;
    assert_eq!(alerts.stats().dropped(), 0);
}

// --- the policy, time passed in ---------------------------------------------

fn policy(global: &str, webhook: &str) -> Policy {
    let cfg = config("http://127.0.0.1:9/", "json", global, webhook);
    Policy::new(Rules::new(&cfg, &cfg.webhooks[0]))
}

struct Clock {
    base: Now,
}

impl Clock {
    fn new() -> Self {
        Self {
            base: Now {
                mono: tokio::time::Instant::now(),
                wall: at(0),
            },
        }
    }
    fn at(&self, secs: u64) -> Now {
        let d = Duration::from_secs(secs);
        Now {
            mono: self.base.mono + d,
            wall: self.base.wall + chrono::Duration::from_std(d).unwrap(),
        }
    }
}

fn kinds(outs: &[Out]) -> Vec<(Kind, usize)> {
    outs.iter()
        .map(|o| match o {
            Out::One(item) => (item.kind, 1),
            Out::Digest(items) => (Kind::Digest, items.len()),
        })
        .collect()
}

#[test]
fn alerts_policy_threshold_sends_each_then_digests() {
    let clock = Clock::new();
    let mut p = policy("", "");
    // Exactly the threshold in one pass: that many messages, at once.
    let outs = p.on_events(&outage(20), clock.at(0));
    assert_eq!(kinds(&outs), vec![(Kind::Transition, 1); 20]);
    // Past it in the same window: held until the window closes.
    let more = outage(25);
    assert!(p.on_events(&more[20..], clock.at(10)).is_empty());
    assert!(p.on_tick(clock.at(59)).is_empty());
    assert_eq!(p.next_wake(), Some(clock.at(60).mono));
    assert_eq!(kinds(&p.on_tick(clock.at(60))), [(Kind::Digest, 5)]);
    // A new window: back to one message each.
    let outs = p.on_events(
        &[event("1", Some(Overall::Ok), Overall::Late)],
        clock.at(61),
    );
    assert_eq!(kinds(&outs), [(Kind::Transition, 1)]);
}

#[test]
fn alerts_policy_mass_outage_in_one_pass_is_one_digest() {
    let clock = Clock::new();
    let mut p = policy("", "");
    assert!(p.on_events(&outage(300), clock.at(0)).is_empty());
    assert_eq!(kinds(&p.on_tick(clock.at(60))), [(Kind::Digest, 300)]);
    assert!(p.on_tick(clock.at(120)).is_empty());
}

#[test]
fn alerts_policy_rate_limit_gathers_the_rest() {
    let clock = Clock::new();
    let mut p = policy("max_messages_per_minute = 3\ndigest_window = \"10s\"", "");
    let outs = p.on_events(&outage(5), clock.at(0));
    assert_eq!(kinds(&outs), vec![(Kind::Transition, 1); 3]);
    // The window closes at 10 s but the limit is reached until 60 s.
    assert!(p.on_tick(clock.at(10)).is_empty());
    assert_eq!(p.next_wake(), Some(clock.at(60).mono));
    assert_eq!(kinds(&p.on_tick(clock.at(60))), [(Kind::Digest, 2)]);
}

#[test]
fn alerts_policy_reminders_while_the_state_lasts() {
    let clock = Clock::new();
    let mut p = policy("", "reminder_every = \"1h\"");
    let failing = event("3550308", Some(Overall::Ok), Overall::Failing);
    assert_eq!(
        kinds(&p.on_events(&[failing], clock.at(0))),
        [(Kind::Transition, 1)]
    );
    assert!(p.on_tick(clock.at(3599)).is_empty());
    assert_eq!(kinds(&p.on_tick(clock.at(3600))), [(Kind::Reminder, 1)]);
    assert!(p.on_tick(clock.at(3601)).is_empty());
    assert_eq!(p.next_wake(), Some(clock.at(7200).mono));
    assert_eq!(kinds(&p.on_tick(clock.at(7200))), [(Kind::Reminder, 1)]);
    // Recovery: one message, no more reminders.
    let ok = event("3550308", Some(Overall::Failing), Overall::Ok);
    assert_eq!(
        kinds(&p.on_events(&[ok], clock.at(9000))),
        [(Kind::Transition, 1)]
    );
    assert_eq!(p.next_wake(), None);
    assert!(p.on_tick(clock.at(10_800)).is_empty());
}

#[test]
fn alerts_policy_restore_keeps_the_cadence_and_sends_nothing() {
    let clock = Clock::new();
    let mut p = policy("", "reminder_every = \"1h\"");
    let mut offline = event("3550308", Some(Overall::Ok), Overall::Offline);
    offline.at = at(0) - chrono::Duration::minutes(90);
    let healthy = event("3304557", Some(Overall::Late), Overall::Ok);
    p.restore(&[offline, healthy], clock.at(0));
    assert_eq!(p.open_count(), 1);
    assert!(p.on_tick(clock.at(0)).is_empty());
    assert!(p.on_tick(clock.at(29 * 60)).is_empty());
    assert_eq!(kinds(&p.on_tick(clock.at(30 * 60))), [(Kind::Reminder, 1)]);
    // Many restored reminders falling due together: one digest.
    let mut p = policy("", "reminder_every = \"1h\"");
    p.restore(&outage(300), clock.at(0));
    assert!(p.on_tick(clock.at(59 * 60)).is_empty());
    assert!(p.on_tick(clock.at(59 * 60 + 1)).is_empty());
    let due = p.next_wake().unwrap();
    assert!(
        p.on_tick(Now {
            mono: due,
            wall: clock.at(3600).wall
        })
        .is_empty()
    );
    let outs = p.on_tick(clock.at(3600 + 60));
    assert_eq!(kinds(&outs), [(Kind::Digest, 300)]);
}

#[test]
fn alerts_policy_which_transitions_alert() {
    let clock = Clock::new();
    // No degraded, recoveries on.
    let mut p = policy("", r#"states = ["failing", "offline", "ok"]"#);
    let cases = [
        (None, Overall::Ok, 0),
        (None, Overall::Failing, 1),
        (Some(Overall::Failing), Overall::Ok, 1),
        (Some(Overall::Ok), Overall::Degraded, 0),
        (Some(Overall::Degraded), Overall::Ok, 0),
        (Some(Overall::Ok), Overall::Late, 0),
        (Some(Overall::Late), Overall::Offline, 1),
        (Some(Overall::Offline), Overall::Inactive, 0),
        (Some(Overall::Offline), Overall::Offline, 0),
    ];
    for (i, (from, to, want)) in cases.into_iter().enumerate() {
        // A fresh window each time (the rate limit is far away).
        let now = clock.at(100 * i as u64);
        let outs = p.on_events(&[event("3550308", from, to)], now);
        assert_eq!(outs.len(), want, "{from:?} → {to}");
    }
    // Without `ok`, recoveries are not sent.
    let mut p = policy("", r#"states = ["failing"]"#);
    p.on_events(
        &[event("1", Some(Overall::Ok), Overall::Failing)],
        clock.at(0),
    );
    assert!(
        p.on_events(
            &[event("1", Some(Overall::Failing), Overall::Ok)],
            clock.at(1)
        )
        .is_empty()
    );
}

#[test]
fn alerts_flush_on_stop_sends_what_is_gathered() {
    let clock = Clock::new();
    let mut p = policy("", "");
    assert!(p.on_events(&outage(30), clock.at(0)).is_empty());
    assert_eq!(kinds(&p.flush()), [(Kind::Digest, 30)]);
    assert!(p.flush().is_empty());
}

#[test]
fn alerts_slack_markup_from_agents_is_escaped() {
    let mut e = event("3550308", Some(Overall::Ok), Overall::Failing);
    e.reason = "<!channel> disk full & more".into();
    e.name = "A<b>".into();
    let item = super::policy::Item {
        kind: Kind::Transition,
        event: e,
    };
    let msg = super::message::render(&Out::One(item), Format::Slack, None);
    let body: Value = serde_json::from_slice(&msg.body).unwrap();
    let text = body["attachments"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("&lt;!channel&gt; disk full &amp; more"),
        "{text}"
    );
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("🔴 A&lt;b&gt;/SP")
    );
    assert!(body["attachments"][0].get("title_link").is_none());
}

// --- configuration -----------------------------------------------------------

fn parse(text: &str) -> Result<AlertsConfig, String> {
    let cfg: AlertsConfig = toml::from_str(text).map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

const HOOK: &str = r#"
[[webhooks]]
name = "ops-slack"
url = "https://hooks.example/services/T000/B000/XXXX"
"#;

#[test]
fn alerts_config_defaults_and_full() {
    let off = parse("").unwrap();
    assert!(!off.enabled());
    assert_eq!(off, AlertsConfig::default());

    let cfg = parse(
        r#"
dashboard_url = "https://central.example/"
digest_threshold = 10
digest_window = "2m"
max_messages_per_minute = 12
[[webhooks]]
name = "ops-slack"
url_env = "SLACK_URL"
format = "slack"
states = ["failing", "offline", "ok"]
reminder_every = "4h"
timeout = "5s"
max_attempts = 3
[[webhooks]]
name = "integration"
url = "http://10.0.0.5:8080/alerts"
format = "json"
"#,
    )
    .unwrap();
    assert!(cfg.enabled());
    assert_eq!(cfg.digest_window, Duration::from_secs(120));
    let slack = &cfg.webhooks[0];
    assert_eq!(slack.reminder_every, Some(Duration::from_secs(4 * 3600)));
    assert_eq!(
        slack.states,
        [Overall::Failing, Overall::Offline, Overall::Ok]
    );
    assert_eq!(cfg.webhooks[1].format, Format::Json);
    assert_eq!(cfg.webhooks[1].states.len(), 6);
    assert_eq!(cfg.webhooks[1].max_attempts, 6);
}

#[test]
fn alerts_config_errors_name_the_field() {
    let bad = |text: &str, field: &str| {
        let e = parse(text).unwrap_err();
        assert!(e.contains(field), "{field} not in: {e}");
        assert!(!e.contains("XXXX"), "the URL leaked: {e}");
        assert!(!e.contains("secret-path"), "the URL leaked: {e}");
    };
    bad(&format!("bogus = 1\n{HOOK}"), "bogus");
    bad(&format!("{HOOK}color = \"red\""), "color");
    bad(&format!("{HOOK}states = [\"broken\"]"), "broken");
    bad(&format!("{HOOK}format = \"teams\""), "teams");
    bad(
        &format!("digest_threshold = 0\n{HOOK}"),
        "alerts.digest_threshold",
    );
    bad(
        &format!("max_messages_per_minute = 0\n{HOOK}"),
        "alerts.max_messages_per_minute",
    );
    bad(
        &format!("digest_window = \"0s\"\n{HOOK}"),
        "alerts.digest_window",
    );
    bad(
        "dashboard_url = \"ftp://central.example/\"",
        "alerts.dashboard_url",
    );
    bad(
        &HOOK.replace("https://hooks", "ftp://hooks"),
        "alerts.webhooks[0].url",
    );
    bad(
        &HOOK.replace("https://hooks.example", "hooks.example"),
        "alerts.webhooks[0].url",
    );
    bad(
        &format!("{HOOK}url_env = \"X\""),
        "exactly one of url, url_env and url_file",
    );
    bad(&format!("{HOOK}states = []"), "alerts.webhooks[0].states");
    bad(
        &format!("{HOOK}reminder_every = \"10s\""),
        "alerts.webhooks[0].reminder_every",
    );
    bad(
        &format!("{HOOK}max_attempts = 0"),
        "alerts.webhooks[0].max_attempts",
    );
    bad(&format!("{HOOK}{HOOK}"), "alerts.webhooks[1].name");
    bad(
        &HOOK.replace("ops-slack", "ops slack"),
        "alerts.webhooks[0].name",
    );
    bad(
        "[[webhooks]]\nname = \"x\"\nurl = \"ftp://h/secret-path\"",
        "the scheme must be http or https",
    );
}

#[test]
fn alerts_config_in_the_collector_config() {
    let base = r#"
version = 1
[server]
listen = "127.0.0.1:7443"
[tls]
ca_file = "ca.pem"
cert_file = "server.pem"
key_file = "server.key"
[database]
url = "postgres://collector@127.0.0.1:5432/analytic"
[plans]
allow_local_jobs = true
"#;
    let cfg = crate::config::CollectorConfig::parse(base).unwrap();
    assert!(!cfg.alerts.enabled());
    let with = format!(
        "{base}[alerts]\ndigest_threshold = 5\n{}",
        HOOK.replace("[[webhooks]]", "[[alerts.webhooks]]")
    );
    let cfg = crate::config::CollectorConfig::parse(&with).unwrap();
    assert_eq!(cfg.alerts.digest_threshold, 5);
    assert_eq!(cfg.alerts.webhooks[0].name, "ops-slack");
    let e = crate::config::CollectorConfig::parse(
        &with.replace("digest_threshold = 5", "digest_threshold = 0"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("alerts.digest_threshold"), "{e}");
}

#[test]
fn alerts_url_file_is_a_secret_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slack.url");
    std::fs::write(&path, "https://hooks.example/services/secret-path\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cfg = parse("[[webhooks]]\nname = \"ops\"\nurl_file = \"slack.url\"").unwrap();
    cfg.resolve_relative(dir.path());
    cfg.check_urls().unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = cfg.check_urls().unwrap_err().to_string();
    assert!(e.contains("alerts.webhooks[0].url_file"), "{e}");
    assert!(!e.contains("secret-path"), "{e}");
    std::fs::write(&path, "gopher://hooks.example/secret-path").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = cfg.check_urls().unwrap_err().to_string();
    assert!(e.contains("scheme"), "{e}");
    assert!(!e.contains("secret-path"), "{e}");
}
