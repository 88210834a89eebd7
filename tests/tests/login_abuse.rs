//! Issue #20, the people's front door: logins throttled per source and per
//! name before any hash, Argon2 on a small bounded pool off the async
//! workers, failed logins audited with a printable name, body limits per
//! route, `__Host-` cookies with HSTS and `no-store`, a CSRF pair on the
//! login form, `/metrics` and `/readyz` not served anonymously to people,
//! and re-enrolling a municipality with a live agent kept for admins.
//!
//! Sources are loopback addresses other than 127.0.0.1 (every `127/8`
//! address is this machine's; the collector sees each as its own peer).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result};

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;
use transmissor_tests::http::{Response, get, request, request_from};
use transmissor_tests::operators::{add_operator, login, post_login_from, wait_http};
use transmissor_tests::pg::free_port;
use transmissor_tests::stack::{Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("2304400", "Fortaleza");

fn src(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, last]))
}

fn set_cookies(r: &Response) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `__Host-` rules: `Secure`, `Path=/`, no `Domain`.
fn assert_host_cookie(set: &str, name: &str) {
    assert!(set.starts_with(&format!("__Host-{name}=")), "{set}");
    for attr in ["Secure", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");
}

fn assert_hsts_no_store(r: &Response) {
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000"),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("cache-control"),
        Some("no-store"),
        "{:?}",
        r.headers
    );
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn csrf_of(http: SocketAddr, trust: &std::path::Path, cookie: &str) -> Result<String> {
    let me = request(
        http,
        "GET",
        "/api/v1/me",
        &[("Cookie", cookie)],
        "",
        Some(trust),
    )
    .await?;
    anyhow::ensure!(me.status == 200, "{me:?}");
    assert_hsts_no_store(&me);
    me.body
        .split("\"csrf_token\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_string)
        .context("no csrf_token")
}

async fn issue(
    http: SocketAddr,
    trust: &std::path::Path,
    cookie: &str,
    csrf: &str,
    ibge: &str,
) -> Result<Response> {
    request(
        http,
        "POST",
        "/api/v1/tokens",
        &[
            ("Cookie", cookie),
            ("X-CSRF-Token", csrf),
            ("Content-Type", "application/json"),
        ],
        &format!("{{\"ibge\": \"{ibge}\"}}"),
        Some(trust),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_throttled_audited_and_the_front_door_is_tight() -> Result<()> {
    let http_port = free_port();
    let mut stack = Stack::with_options(
        &[A, B],
        StackOptions {
            enrollment: true,
            collector_extra_toml: format!(
                "\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
                 [http.login]\nsource_burst = 4\nsource_per_minute = 1\n\
                 name_burst = 8\nname_per_minute = 1\n"
            ),
            ..Default::default()
        },
    )
    .await?;
    stack.start_collector().await?;
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
    let trust = stack.server_trust.clone();
    wait_http(http).await?;
    add_operator(&stack, "ana", "viewer", "senha-da-ana-123")?;
    add_operator(&stack, "bruno", "operator", "senha-do-bruno-123")?;
    add_operator(&stack, "carla", "admin", "senha-da-carla-123")?;

    // One source, one name: the budget, then 429 with Retry-After and no
    // hash (the same answer whatever the password).
    for _ in 0..4 {
        let r = post_login_from(src(2), http, &trust, "ana", "errada-errada-1").await?;
        assert_eq!(r.status, 401, "{r:?}");
    }
    for pw in ["errada-errada-1", "senha-da-ana-123"] {
        let r = post_login_from(src(2), http, &trust, "ana", pw).await?;
        assert_eq!(r.status, 429, "{r:?}");
        let after: u64 = r.header("retry-after").context("no Retry-After")?.parse()?;
        assert!((1..=60).contains(&after), "Retry-After {after}");
        assert!(set_cookies(&r).is_empty(), "no session when throttled");
    }
    // A browser (asking for HTML) gets the form again, with the reason.
    let r = request_from(
        src(2),
        http,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "text/html"),
        ],
        "name=ana&password=x&csrf=y",
        Some(&trust),
    )
    .await?;
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.header("retry-after").is_some());
    assert!(r.body.contains("Tentativas demais"), "{}", r.body);
    // Another source, the same name: normal answers while the name has
    // budget (a right password gives its attempt back).
    let r = post_login_from(src(3), http, &trust, "ana", "senha-da-ana-123").await?;
    assert_eq!(r.status, 303, "{r:?}");
    let r = post_login_from(src(3), http, &trust, "ana", "errada-errada-1").await?;
    assert_eq!(r.status, 401, "{r:?}");
    // The name's own budget: 8 attempts from anywhere (4 + 1 given back + 3).
    for last in [4, 5] {
        let r = post_login_from(src(last), http, &trust, "ana", "errada-errada-1").await?;
        assert_eq!(r.status, 401, "{r:?}");
    }
    let r = post_login_from(src(6), http, &trust, "ana", "errada-errada-1").await?;
    assert_eq!(r.status, 401, "{r:?}");
    let r = post_login_from(src(7), http, &trust, "ANA", "errada-errada-1").await?;
    assert_eq!(
        r.status, 429,
        "the name is throttled from any source: {r:?}"
    );
    // ... while that source, with another name, is answered normally.
    let r = post_login_from(src(7), http, &trust, "bruno", "errada-errada-1").await?;
    assert_eq!(r.status, 401, "{r:?}");

    // A failed login with CR/LF in the name: audited, printable.
    let hostile = "mal\r\nforged: operator.login ok\u{1b}[2J";
    let r = post_login_from(src(8), http, &trust, hostile, "errada-errada-1").await?;
    assert_eq!(r.status, 401, "{r:?}");
    let pool = stack.collector_pool().await?;
    let names: Vec<(String, Option<String>, serde_json::Value)> = sqlx::query_as(
        "SELECT actor, source_addr, detail FROM transmissor.audit_log \
         WHERE action = 'operator.login_failed' ORDER BY id",
    )
    .fetch_all(&pool)
    .await?;
    let row = names
        .iter()
        .find(|(_, _, d)| d["name"].as_str().is_some_and(|n| n.starts_with("mal")))
        .context("no audit row for the hostile name")?;
    let audited = row.2["name"].as_str().unwrap_or_default();
    assert!(
        !audited.contains(['\r', '\n', '\u{1b}']),
        "control characters audited: {audited:?}"
    );
    assert!(audited.contains("\\u{d}\\u{a}forged"), "{audited:?}");
    assert_eq!(row.1.as_deref(), Some("127.0.0.8"));
    // Every checked failure is audited; throttled attempts are not.
    assert_eq!(names.len(), 4 + 1 + 3 + 1 + 1, "{names:?}");
    let log = std::fs::read_to_string(&stack.collector.as_ref().context("collector")?.log)?;
    assert!(
        !log.lines().any(|l| l.starts_with("forged")),
        "a forged log line"
    );

    // Bodies: /login takes about 1 KiB.
    let big = format!("name={}&password=x&csrf=y", "a".repeat(10 << 10));
    let r = request_from(
        src(9),
        http,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &big,
        Some(&trust),
    )
    .await?;
    assert_eq!(r.status, 413, "{r:?}");

    // The login form's CSRF pair: without it, refused before any check.
    let page = request_from(src(10), http, "GET", "/login", &[], "", Some(&trust)).await?;
    assert_eq!(page.status, 200);
    assert_hsts_no_store(&page);
    let pre = set_cookies(&page);
    assert_eq!(pre.len(), 1, "{pre:?}");
    assert_host_cookie(pre[0], "transmissor_login");
    let r = request_from(
        src(10),
        http,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "name=bruno&password=senha-do-bruno-123&csrf=forged",
        Some(&trust),
    )
    .await?;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(set_cookies(&r).is_empty());

    // The session cookie, and the headers.
    let r = post_login_from(src(10), http, &trust, "bruno", "senha-do-bruno-123").await?;
    assert_eq!(r.status, 303, "{r:?}");
    assert_hsts_no_store(&r);
    let session = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("__Host-transmissor_session="))
        .context("no session cookie")?
        .to_string();
    assert_host_cookie(&session, "transmissor_session");
    let bruno = session.split(';').next().unwrap_or_default().to_string();
    let bruno_csrf = csrf_of(http, &trust, &bruno).await?;

    // Machines' routes are not for anonymous people; /healthz is.
    assert_eq!(get(http, "/healthz", Some(&trust)).await?.status, 200);
    for path in ["/metrics", "/readyz"] {
        let r = get(http, path, Some(&trust)).await?;
        assert_eq!(r.status, 401, "{path}: {r:?}");
        let r = request(http, "GET", path, &[("Cookie", &bruno)], "", Some(&trust)).await?;
        assert_eq!(r.status, 200, "{path} with a session: {r:?}");
    }
    // Other bodies: a sane small limit, not 2 MB.
    let r = request(
        http,
        "POST",
        "/api/v1/tokens",
        &[
            ("Cookie", &bruno),
            ("X-CSRF-Token", &bruno_csrf),
            ("Content-Type", "application/json"),
        ],
        &format!(
            "{{\"ibge\": \"{}\", \"pad\": \"{}\"}}",
            B.0,
            "x".repeat(64 << 10)
        ),
        Some(&trust),
    )
    .await?;
    assert_eq!(r.status, 413, "{r:?}");

    // Re-enrolling: A has a live agent, B has none.
    let ibge_a: transmissor_proto::identity::Ibge = A.0.parse()?;
    transmissor_collector::registry::add_agent(&pool, ibge_a, stack.munis[0].agent_id).await?;
    let r = issue(http, &trust, &bruno, &bruno_csrf, A.0).await?;
    assert_eq!(
        r.status, 403,
        "an operator re-enrolls a live municipality: {r:?}"
    );
    assert!(r.body.contains("admin"), "{}", r.body);
    let r = issue(http, &trust, &bruno, &bruno_csrf, B.0).await?;
    assert_eq!(
        r.status, 201,
        "an operator enrolls a new municipality: {r:?}"
    );
    assert_hsts_no_store(&r);
    let carla = login(http, &trust, "carla", "senha-da-carla-123")
        .await?
        .context("carla logs in")?;
    let carla_csrf = csrf_of(http, &trust, &carla).await?;
    let r = issue(http, &trust, &carla, &carla_csrf, A.0).await?;
    assert_eq!(r.status, 201, "an admin re-enrolls: {r:?}");
    pool.close().await;
    stack.stop_collector().await?;
    Ok(())
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_stays_on_the_bounded_pool() -> Result<()> {
    let (http_port, metrics_port) = (free_port(), free_port());
    let mut stack = Stack::with_options(
        &[A],
        StackOptions {
            collector_extra_toml: format!(
                "\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
                 metrics_listen = \"127.0.0.1:{metrics_port}\"\n\
                 [http.login]\nsource_burst = 100\nname_burst = 1000\n\
                 hash_threads = 2\nhash_queue = 4\n"
            ),
            ..Default::default()
        },
    )
    .await?;
    stack.start_collector().await?;
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
    let metrics_addr: SocketAddr = format!("127.0.0.1:{metrics_port}").parse()?;
    let trust = stack.server_trust.clone();
    wait_http(http).await?;
    wait_http(metrics_addr).await?;
    add_operator(&stack, "ana", "operator", "senha-da-ana-123")?;
    // Warm: one real check has run (the pool's memory is in the peak).
    assert!(
        login(http, &trust, "ana", "senha-da-ana-123")
            .await?
            .is_some()
    );
    let pid = stack
        .collector
        .as_ref()
        .and_then(|p| p.pid())
        .context("collector pid")?;
    let before = peak_rss_kib(pid)?;

    // Legitimate traffic while the flood runs: new gRPC connections with
    // the agent's identity, and /healthz.
    let m = stack.munis[0].clone();
    let endpoint = stack.endpoint();
    let flooding = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let legit = {
        let (flooding, ok, failed, trust) =
            (flooding.clone(), ok.clone(), failed.clone(), trust.clone());
        tokio::spawn(async move {
            while flooding.load(Ordering::SeqCst) {
                let channel =
                    transmissor_tests::client::channel(&endpoint, &trust, Some((&m.cert, &m.key)));
                let hb = match channel {
                    Ok(ch) => AgentLifecycleClient::new(ch)
                        .heartbeat(pb::HeartbeatRequest {
                            agent_version: "9.9.9".into(),
                            os: "linux-x86_64".into(),
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                    Err(_) => false,
                };
                let health = get(http, "/healthz", Some(&trust))
                    .await
                    .is_ok_and(|r| r.status == 200);
                for good in [hb, health] {
                    if good { &ok } else { &failed }.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };

    // 48 sources, each a wrong password for a real name and an unknown name.
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..48u8 {
        for (name, pw) in [("ana", "errada-errada-1"), ("ninguem", "qualquer-uma-1")] {
            let trust = trust.clone();
            let name = format!("{name}{}", if name == "ana" { "" } else { "-x" });
            flood.spawn(async move {
                post_login_from(
                    Some(IpAddr::from([127, 0, 1, 10 + i])),
                    http,
                    &trust,
                    &name,
                    pw,
                )
                .await
                .map(|r| (r.status, r.header("retry-after").map(str::to_string)))
            });
        }
    }
    let mut statuses = Vec::new();
    while let Some(r) = flood.join_next().await {
        statuses.push(r??);
    }
    flooding.store(false, Ordering::SeqCst);
    legit.await?;

    // Every attempt was answered: checked (401) or refused at once (503,
    // with Retry-After) when the pool's queue was full.
    assert!(
        statuses
            .iter()
            .all(|(s, after)| *s == 401 || (*s == 503 && after.is_some())),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|(s, _)| *s == 401), "{statuses:?}");
    // Legitimate calls all succeeded during the flood.
    assert_eq!(failed.load(Ordering::SeqCst), 0, "legitimate calls failed");
    assert!(ok.load(Ordering::SeqCst) >= 2);

    // The pool's bound held: never more than its two threads hashing, and
    // the process's peak memory did not grow (each thread keeps its own
    // Argon2 memory; a check allocating its 19 MiB left ~230 MiB in the
    // allocator's arenas after 16 checks, and 512 blocking threads more).
    let text = get(metrics_addr, "/metrics", None).await?.body;
    assert_eq!(
        metric(&text, "transmissor_login_hash_threads "),
        Some(2.0),
        "{text}"
    );
    let max = metric(&text, "transmissor_login_hashes_in_flight_max ").context("no gauge")?;
    assert!((1.0..=2.0).contains(&max), "{max} hashing at once");
    let grown_mib = peak_rss_kib(pid)?.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "peak memory grew {grown_mib} MiB under 96 logins (19 MiB per concurrent hash)"
    );
    // Machines' routes live on the metrics listener.
    assert_eq!(get(http, "/metrics", Some(&trust)).await?.status, 404);
    assert_eq!(get(metrics_addr, "/readyz", None).await?.status, 200);
    stack.stop_collector().await?;
    Ok(())
}

/// The last enabled admin cannot be disabled, by the CLI's path or by
/// the admin themselves, and two admins disabling each other at once
/// leave one of them enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_cannot_be_disabled() -> Result<()> {
    use transmissor_collector::operators::{self, OperatorError, Role};
    let s = Stack::new(&[A]).await?;
    let pool = s.collector_pool().await?;
    let enabled_admins = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM transmissor.operators WHERE role = 'admin' AND disabled_at IS NULL",
        )
        .fetch_one(&pool)
        .await?;
        anyhow::Ok(n)
    };
    let password = "a long enough password";
    operators::add(&pool, "ana", Role::Admin, password, "test").await?;
    operators::add(&pool, "caio", Role::Operator, password, "test").await?;
    match operators::disable(&pool, "ana", "ana").await {
        Err(OperatorError::LastAdmin(name)) => assert_eq!(name, "ana"),
        other => panic!("the last admin was disabled: {other:?}"),
    }
    assert_eq!(enabled_admins().await?, 1, "rolled back: ana stays enabled");
    // Non-admins may still be disabled.
    operators::disable(&pool, "caio", "ana").await?;

    operators::add(&pool, "bia", Role::Admin, password, "ana").await?;
    let (x, y) = tokio::join!(
        operators::disable(&pool, "ana", "bia"),
        operators::disable(&pool, "bia", "ana")
    );
    assert!(x.is_ok() != y.is_ok(), "exactly one of {x:?} / {y:?}");
    assert_eq!(enabled_admins().await?, 1);
    Ok(())
}
