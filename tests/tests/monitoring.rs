//! Issue #11, the collector's HTTP side: probes over HTTPS on their own
//! listener, Prometheus metrics on a separate plain address, and metrics
//! that move with real transmissions and heartbeats.

use anyhow::Result;

use transmissor_tests::http::get;
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

    // HTTPS with the collector's certificate; plain HTTP is refused there.
    let r = get(http, "/healthz", Some(&trust)).await?;
    assert_eq!((r.status, r.body.as_str()), (200, "{\"status\":\"up\"}"));
    let r = get(http, "/readyz", Some(&trust)).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"status\":\"ready\""), "{}", r.body);
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

    // Without its database the collector is alive but not ready.
    stack.analytic.stop()?;
    let r = get(http, "/readyz", Some(&trust)).await?;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("unreachable"), "{}", r.body);
    assert_eq!(get(http, "/healthz", Some(&trust)).await?.status, 200);
    Ok(())
}
