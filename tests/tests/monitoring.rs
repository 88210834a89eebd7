//! Issue #11, the collector's HTTP side: probes over HTTPS on their own
//! listener, Prometheus metrics on a separate plain address, and metrics
//! that move with real transmissions and heartbeats.

use anyhow::Result;

use transmissor_tests::http::{get, request};
use transmissor_tests::operators::{add_operator, login, wait_http};
use transmissor_tests::pg::free_port;
use transmissor_tests::stack::{Job, Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");

/// The value of a metric line (`name{labels} value`) in an exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_on_their_own_listeners() -> Result<()> {
    let (http_port, metrics_port) = (free_port(), free_port());
    let mut stack = Stack::with_options(
        &[A],
        StackOptions {
            collector_extra_toml: format!(
                "\n[http]\nlisten = \"127.0.0.1:{http_port}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n"
            ),
            ..Default::default()
        },
    )
    .await?;
    let m = stack.munis[0].clone();
    stack
        .source
        .connect(&m.db)
        .await?
        .batch_execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 2500) g")
        .await?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector().await?;
    let http = format!("127.0.0.1:{http_port}").parse()?;
    let metrics_addr = format!("127.0.0.1:{metrics_port}").parse()?;
    let trust = stack.server_trust.clone();
    wait_http(http).await?;
    wait_http(metrics_addr).await?;

    // HTTPS with the collector's certificate; plain HTTP is refused there.
    let r = get(http, "/healthz", Some(&trust)).await?;
    assert_eq!((r.status, r.body.as_str()), (200, "{\"status\":\"up\"}"));
    // Readiness is for machines: on the metrics listener, not anonymously
    // on the people's door.
    let r = get(metrics_addr, "/readyz", None).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"status\":\"ready\""), "{}", r.body);
    assert_eq!(get(http, "/readyz", Some(&trust)).await?.status, 401);
    assert!(
        get(http, "/healthz", None)
            .await
            .map_or(true, |r| r.status != 200)
    );
    // Metrics live on their own plain listener only.
    assert_eq!(get(http, "/metrics", Some(&trust)).await?.status, 404);
    let before = get(metrics_addr, "/metrics", None).await?;
    assert_eq!(before.status, 200);
    assert_eq!(
        metric(&before.body, "transmissor_received_rows_total"),
        Some(0.0),
        "{}",
        before.body
    );

    // A real run moves them.
    let cfg = stack.agent_config(
        &m,
        &[Job::new("lista", "append", "t_lista", "SELECT * FROM t")],
        "",
    )?;
    let report = stack.run_agent_in_process(&cfg).await?;
    assert!(report.all_committed(), "{report}");
    let after = get(metrics_addr, "/metrics", None).await?.body;
    for (series, want) in [
        ("transmissor_transmissions_begun_total{job=\"lista\"}", 1.0),
        (
            "transmissor_transmissions_finished_total{outcome=\"committed\"}",
            1.0,
        ),
        ("transmissor_received_rows_total", 2500.0),
    ] {
        assert_eq!(metric(&after, series), Some(want), "{series}:\n{after}");
    }
    assert!(metric(&after, "transmissor_batches_total{outcome=\"loaded\"}").unwrap_or(0.0) >= 1.0);
    assert!(metric(&after, "transmissor_received_raw_bytes_total").unwrap_or(0.0) > 2500.0);
    assert!(metric(&after, "transmissor_batch_load_seconds_count").unwrap_or(0.0) >= 1.0);
    // A refused handshake is counted by its reason class.
    let other =
        transmissor_collector::devcerts::generate(&stack.dir.join("other-pki"), &[], &[m.ibge])?;
    let alert = transmissor_tests::identities::raw_alert(
        &stack,
        &other.agents[0].cert,
        &other.agents[0].key,
    )
    .await?;
    assert!(alert.contains("UnknownCA"), "{alert}");
    let counted = transmissor_tests::pg::wait_until(std::time::Duration::from_secs(10), || async {
        get(metrics_addr, "/metrics", None).await.is_ok_and(|r| {
            metric(
                &r.body,
                "transmissor_tls_handshake_failures_total{reason=\"unknown_ca\"}",
            ) == Some(1.0)
        })
    })
    .await;
    assert!(
        counted,
        "{}",
        get(metrics_addr, "/metrics", None).await?.body
    );
    // The example alert rules and Grafana dashboard use only metrics that exist.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "monitoring/prometheus/alerts.yml",
        "monitoring/grafana/transmissor.json",
    ] {
        let text = std::fs::read_to_string(root.join(file))?;
        let mut used: Vec<&str> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("transmissor_") && w.len() > "transmissor_".len())
            .collect();
        used.sort_unstable();
        used.dedup();
        assert!(!used.is_empty(), "{file}");
        for name in used {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                after.contains(&format!("# TYPE {family} "))
                    || after.contains(&format!("# TYPE {} ", family.trim_end_matches("_total"))),
                "{file} uses {name}, which /metrics does not expose"
            );
        }
    }

    // Without its database the collector is alive but not ready.
    stack.analytic.stop()?;
    let r = get(metrics_addr, "/readyz", None).await?;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("unreachable"), "{}", r.body);
    assert_eq!(get(http, "/healthz", Some(&trust)).await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_log_in_and_roles_and_csrf_guard_writes() -> Result<()> {
    let http_port = free_port();
    let mut stack = Stack::with_options(
        &[A],
        StackOptions {
            collector_extra_toml: format!("\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n"),
            ..Default::default()
        },
    )
    .await?;
    stack.start_collector().await?;
    let http: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
    let trust = stack.server_trust.clone();
    wait_http(http).await?;
    let agent = stack.munis[0].agent_id;
    add_operator(&stack, "ana", "viewer", "senha-da-ana-123")?;
    add_operator(&stack, "bruno", "operator", "senha-do-bruno-123")?;
    // A short password is refused.
    assert!(add_operator(&stack, "caio", "admin", "curta").is_err());

    // No session: nothing to read.
    let r = get(http, "/api/v1/me", Some(&trust)).await?;
    assert_eq!(r.status, 401);
    assert!(
        r.body.contains("\"code\":\"unauthenticated\""),
        "{}",
        r.body
    );
    // Wrong password, unknown name: the same refusal.
    assert_eq!(login(http, &trust, "ana", "errada-errada-1").await?, None);
    assert_eq!(login(http, &trust, "zoe", "senha-da-ana-123").await?, None);

    let ana = login(http, &trust, "ana", "senha-da-ana-123")
        .await?
        .expect("ana logs in");
    let me = request(
        http,
        "GET",
        "/api/v1/me",
        &[("Cookie", &ana)],
        "",
        Some(&trust),
    )
    .await?;
    assert_eq!(me.status, 200);
    assert!(me.body.contains("\"role\":\"viewer\""), "{}", me.body);
    let csrf = |body: &str| {
        body.split("\"csrf_token\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_string()
    };
    let ana_csrf = csrf(&me.body);
    // A viewer cannot revoke, even with the right CSRF token.
    let revoke = format!("/api/v1/agents/{agent}/revoke");
    let r = request(
        http,
        "POST",
        &revoke,
        &[("Cookie", &ana), ("X-CSRF-Token", &ana_csrf)],
        "",
        Some(&trust),
    )
    .await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("operator role"), "{}", r.body);

    let bruno = login(http, &trust, "bruno", "senha-do-bruno-123")
        .await?
        .expect("bruno logs in");
    let me = request(
        http,
        "GET",
        "/api/v1/me",
        &[("Cookie", &bruno)],
        "",
        Some(&trust),
    )
    .await?;
    let bruno_csrf = csrf(&me.body);
    // Without the CSRF token (a cross-site form), or with another session's: refused.
    for token in ["", ana_csrf.as_str()] {
        let r = request(
            http,
            "POST",
            &revoke,
            &[("Cookie", &bruno), ("X-CSRF-Token", token)],
            "",
            Some(&trust),
        )
        .await?;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("CSRF"), "{}", r.body);
    }
    let r = request(
        http,
        "POST",
        &revoke,
        &[
            ("Cookie", &bruno),
            ("X-CSRF-Token", &bruno_csrf),
            ("Content-Type", "application/json"),
        ],
        "{\"reason\": \"teste\"}",
        Some(&trust),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = stack.analytic_client().await?;
    let (revoked, actor): (bool, String) = {
        let row = c
            .query_one(
                "SELECT a.revoked_at IS NOT NULL, l.actor FROM transmissor.agents a \
                 JOIN transmissor.audit_log l ON l.agent_id = a.id AND l.action = 'agent.revoked' \
                 WHERE a.id = $1",
                &[&agent],
            )
            .await?;
        (row.get(0), row.get(1))
    };
    assert!(revoked);
    assert_eq!(actor, "operator:bruno (web)");

    // Admin-only writes: an operator may not add operators or publish
    // plans; an admin may, audited with their name.
    let json = ("Content-Type", "application/json");
    let new_op = "{\"name\": \"edu\", \"role\": \"viewer\", \"password\": \"senha-do-edu-123\"}";
    for (path, body) in [
        ("/api/v1/operators", new_op),
        ("/api/v1/plans", "format = 1"),
    ] {
        let r = request(
            http,
            "POST",
            path,
            &[("Cookie", &bruno), ("X-CSRF-Token", &bruno_csrf), json],
            body,
            Some(&trust),
        )
        .await?;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("admin role"), "{}", r.body);
    }
    add_operator(&stack, "dora", "admin", "senha-da-dora-123")?;
    let dora = login(http, &trust, "dora", "senha-da-dora-123")
        .await?
        .expect("dora logs in");
    let me = request(
        http,
        "GET",
        "/api/v1/me",
        &[("Cookie", &dora)],
        "",
        Some(&trust),
    )
    .await?;
    let dora_csrf = csrf(&me.body);
    let r = request(
        http,
        "POST",
        "/api/v1/operators",
        &[("Cookie", &dora), ("X-CSRF-Token", &dora_csrf), json],
        new_op,
        Some(&trust),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        login(http, &trust, "edu", "senha-do-edu-123")
            .await?
            .is_some()
    );
    // An unsigned plan is refused with a reason; nothing is published.
    let r = request(
        http,
        "POST",
        "/api/v1/plans",
        &[("Cookie", &dora), ("X-CSRF-Token", &dora_csrf)],
        "format = 1\nversion = 9\n",
        Some(&trust),
    )
    .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("signed"), "{}", r.body);
    let added_by: String = c
        .query_one(
            "SELECT actor FROM transmissor.audit_log WHERE action = 'operator.added' \
             AND detail->>'operator' = 'edu'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(added_by, "operator:dora (web)");

    // A new login is a new session; disabling the operator ends them all.
    let again = login(http, &trust, "bruno", "senha-do-bruno-123")
        .await?
        .expect("bruno logs in again");
    assert_ne!(again, bruno);
    let out = std::process::Command::new(transmissor_tests::procs::bin("transmissor-collector")?)
        .args(["operator", "disable", "--config"])
        .arg(&stack.collector_config)
        .arg("bruno")
        .output()?;
    assert!(out.status.success());
    for cookie in [&bruno, &again] {
        let r = request(
            http,
            "GET",
            "/api/v1/me",
            &[("Cookie", cookie)],
            "",
            Some(&trust),
        )
        .await?;
        assert_eq!(r.status, 401);
    }
    assert_eq!(
        login(http, &trust, "bruno", "senha-do-bruno-123").await?,
        None
    );
    Ok(())
}
