//! The agent's own Prometheus metrics, on an optional local port
//! (`[metrics] listen`): what the heartbeat reports (spool, certificate,
//! clock, plan, each job's last run and next slot) and counts since start
//! (runs by job and outcome, rows committed), rendered at each scrape from
//! the same snapshot the heartbeat sends, so the two never disagree.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use transmissor_proto::pb;

use crate::pipeline::bandwidth::LinkCap;
use crate::status::RunTotals;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobOutcomeLabel {
    job: String,
    outcome: &'static str,
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

/// The Prometheus text exposition of one snapshot (with the upload link's
/// figures when `link` is given).
pub fn render(hb: &pb::HeartbeatRequest, totals: &RunTotals, link: Option<&LinkCap>) -> String {
    let mut r = Registry::with_prefix("transmissor_agent");
    if let Some(cap) = link {
        register_link(&mut r, cap);
    }
    gauge(
        &mut r,
        "spool_used_bytes",
        "Bytes in the spool",
        i64::try_from(hb.spool_used_bytes).unwrap_or(i64::MAX),
    );
    gauge(
        &mut r,
        "spool_limit_bytes",
        "The spool's size limit",
        i64::try_from(hb.spool_limit_bytes).unwrap_or(i64::MAX),
    );
    gauge(
        &mut r,
        "certificate_expiry_timestamp_seconds",
        "When the agent's certificate expires (Unix time)",
        hb.certificate_not_after_unix_ms / 1000,
    );
    gauge(
        &mut r,
        "clock_offset_seconds",
        "The collector's clock minus this machine's, as last measured",
        hb.clock_offset_ms / 1000,
    );
    gauge(
        &mut r,
        "plan_version",
        "The version of the signed plan in force (0: none)",
        i64::try_from(hb.plan_version).unwrap_or(i64::MAX),
    );
    gauge(
        &mut r,
        "plan_refused",
        "1 while the agent refuses the plan it was sent",
        i64::from(!hb.plan_refusal.is_empty()),
    );
    gauge(
        &mut r,
        "plan_expired",
        "1 while the plan in force has expired",
        i64::from(hb.plan_expired),
    );
    let last: Family<JobOutcomeLabel, Gauge> = Family::default();
    let last_rows: Family<JobLabel, Gauge> = Family::default();
    for run in &hb.last_runs {
        let outcome = crate::status::outcome_name(&run.outcome);
        last.get_or_create(&JobOutcomeLabel {
            job: run.job.clone(),
            outcome,
        })
        .set(run.finished_unix_ms / 1000);
        last_rows
            .get_or_create(&JobLabel {
                job: run.job.clone(),
            })
            .set(i64::try_from(run.rows).unwrap_or(i64::MAX));
    }
    r.register(
        "last_run_timestamp_seconds",
        "When each job's last run ended, labelled with its outcome",
        last,
    );
    r.register("last_run_rows", "Rows of each job's last run", last_rows);
    let next: Family<JobLabel, Gauge> = Family::default();
    for n in &hb.next_runs {
        next.get_or_create(&JobLabel { job: n.job.clone() })
            .set(n.next_unix_ms / 1000);
    }
    r.register(
        "next_run_timestamp_seconds",
        "Each job's next scheduled slot",
        next,
    );
    let runs: Family<JobOutcomeLabel, Counter> = Family::default();
    for ((job, outcome), n) in &totals.runs {
        runs.get_or_create(&JobOutcomeLabel {
            job: job.clone(),
            outcome,
        })
        .inc_by(*n);
    }
    r.register("runs", "Job runs since the agent started, by outcome", runs);
    let rows: Family<JobLabel, Counter> = Family::default();
    for (job, n) in &totals.rows {
        rows.get_or_create(&JobLabel { job: job.clone() })
            .inc_by(*n);
    }
    r.register(
        "committed_rows",
        "Rows committed since the agent started, by job",
        rows,
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    out
}

/// The upload cap in force, the bytes sent under it, the link estimate and
/// the zstd level last chosen.
fn register_link(r: &mut Registry, cap: &LinkCap) {
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        r,
        "upload_limit_bytes_per_second",
        "The upload bandwidth cap in force ([upload]; 0: unlimited)",
        as_i64(cap.peek().bytes_per_s().unwrap_or(0)),
    );
    let sent: Counter = Counter::default();
    sent.inc_by(cap.sent_bytes());
    r.register(
        "upload_sent_bytes",
        "Bytes written to the collector's connections (TLS included)",
        sent,
    );
    let meter = crate::pipeline::level::link::global();
    gauge(
        r,
        "link_estimate_bytes_per_second",
        "The link's speed as measured from batch uploads (0: not measured yet)",
        meter.measured().map_or(0, |b| b as i64),
    );
    if let Some(level) = meter.level() {
        gauge(
            r,
            "zstd_level",
            "The zstd level last chosen",
            i64::from(level),
        );
    }
}

/// Serves `GET /metrics` on `listener` until `cancel`; `snapshot` renders
/// the text at each scrape.
pub async fn serve(
    listener: TcpListener,
    snapshot: Arc<dyn Fn() -> String + Send + Sync>,
    cancel: CancellationToken,
) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let text = snapshot();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
                    .into_response()
            }
        }),
    );
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "agent metrics listening");
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::warn!(error = %e, "agent metrics server stopped");
    }
}

/// Binds `addr` (a clear error naming it when taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> (pb::HeartbeatRequest, RunTotals) {
        let hb = pb::HeartbeatRequest {
            spool_used_bytes: 2048,
            spool_limit_bytes: 1 << 30,
            certificate_not_after_unix_ms: 1_800_000_000_000,
            plan_version: 7,
            last_runs: vec![pb::JobRunStatus {
                job: "visitas".into(),
                outcome: "committed".into(),
                finished_unix_ms: 1_790_000_000_000,
                rows: 1234,
                error: String::new(),
            }],
            next_runs: vec![pb::JobNextRun {
                job: "visitas".into(),
                next_unix_ms: 1_790_086_400_000,
            }],
            ..Default::default()
        };
        let mut totals = RunTotals::default();
        totals.runs.insert(("visitas".into(), "committed"), 3);
        totals.runs.insert(("visitas".into(), "failed"), 1);
        totals.rows.insert("visitas".into(), 3702);
        (hb, totals)
    }

    #[test]
    fn renders_the_snapshot_with_prometheus_names() {
        let (hb, totals) = snapshot();
        let cap = LinkCap::new(
            crate::config::UploadConfig {
                default_limit: crate::config::Rate::BytesPerSec(500_000),
                windows: Vec::new(),
            },
            chrono_tz::UTC,
        );
        let text = render(&hb, &totals, Some(&cap));
        for line in [
            "transmissor_agent_spool_used_bytes 2048",
            "transmissor_agent_certificate_expiry_timestamp_seconds 1800000000",
            "transmissor_agent_plan_version 7",
            "transmissor_agent_last_run_rows{job=\"visitas\"} 1234",
            "transmissor_agent_runs_total{job=\"visitas\",outcome=\"failed\"} 1",
            "transmissor_agent_committed_rows_total{job=\"visitas\"} 3702",
            "transmissor_agent_next_run_timestamp_seconds{job=\"visitas\"} 1790086400",
            "transmissor_agent_upload_limit_bytes_per_second 500000",
            "transmissor_agent_upload_sent_bytes_total 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[tokio::test]
    async fn served_over_a_real_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let (hb, totals) = snapshot();
        let task = tokio::spawn(serve(
            listener,
            Arc::new(move || render(&hb, &totals, None)),
            cancel.clone(),
        ));
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        tcp.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.contains("transmissor_agent_spool_used_bytes 2048"),
            "{body}"
        );
        cancel.cancel();
        task.await.unwrap();
    }
}
