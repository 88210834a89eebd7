//! `cargo xtask bench-dashboard`: the server's cost of showing the whole
//! country. A real collector over a control schema holding 5,570
//! municipalities with a year of daily transmissions each (written by
//! `transmissor_tests::fleet`); after its health evaluator has derived them
//! all, times over HTTPS on loopback, each request on a new connection:
//!
//! - the anchor: `GET /healthz` (TLS handshake and HTTP, no work);
//! - the anchor: the database read alone (`SELECT` of the stored health
//!   with the agents, what the overview reads);
//! - `GET /api/v1/municipalities` (the JSON list, 5,570 rows), plain and
//!   gzipped (`Accept-Encoding: gzip`, what browsers send);
//! - `GET /` (the dashboard overview, 5,570 rows), plain and gzipped;
//! - `GET /api/v1/municipalities/{ibge}` and `GET /m/{ibge}` (a year of one
//!   municipality);
//!
//! and reports medians and ratios, the size of each answer on the wire, and the
//! evaluator's pass times (the first one loads the recent past). Prints
//! RESULT lines.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use transmissor_tests::http::request;
use transmissor_tests::operators::{add_operator, login, wait_http};
use transmissor_tests::pg::{free_port, wait_until};
use transmissor_tests::stack::{Stack, StackOptions};

#[derive(Args)]
pub struct DashboardBenchArgs {
    /// Municipalities in the fleet.
    #[arg(long, default_value_t = 5570)]
    municipalities: usize,
    /// Days of daily transmissions each.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Timed requests of each kind (the median is reported).
    #[arg(long, default_value_t = 15)]
    repeat: usize,
}

pub fn run(args: DashboardBenchArgs) -> Result<()> {
    crate::setup::with_binaries(true, |_| bench(args))
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

async fn bench(args: DashboardBenchArgs) -> Result<()> {
    let http_port = free_port();
    let mut stack = Stack::with_options(
        &[],
        StackOptions {
            collector_extra_toml: format!(
                "\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n[monitor]\nevaluate_every = \"20s\"\n"
            ),
            ..Default::default()
        },
    )
    .await?;
    let pool = stack.collector_pool().await?;
    let t = Instant::now();
    let seeded =
        transmissor_tests::fleet::seed(&pool, args.municipalities, args.days, &["visitas"]).await?;
    println!(
        "==> seeded {} municipalities, {} transmissions in {:.1} s",
        seeded.municipalities,
        seeded.transmissions,
        t.elapsed().as_secs_f64()
    );
    add_operator(&stack, "bench", "viewer", "senha-do-bench-123")?;
    stack.start_collector().await?;
    let http = format!("127.0.0.1:{http_port}").parse()?;
    let trust = stack.server_trust.clone();
    wait_http(http).await?;
    let cookie = login(http, &trust, "bench", "senha-do-bench-123")
        .await?
        .context("login")?;

    // The evaluator's first pass (loads 35 days of the country), then one
    // more (incremental).
    let passes = |min: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i32, i32)>(
                "SELECT municipalities, duration_ms FROM transmissor.health_evaluations",
            )
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
            .filter(|(n, _)| i64::from(*n) >= min)
        }
    };
    let ready = wait_until(Duration::from_secs(600), || async {
        passes(args.municipalities as i64).await.is_some()
    })
    .await;
    if !ready {
        bail!("the evaluator never finished a pass");
    }
    let first: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT evaluated_at FROM transmissor.health_evaluations")
            .fetch_one(&pool)
            .await?;
    let (_, first_ms) = passes(0).await.context("first pass")?;
    wait_until(Duration::from_secs(120), || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "SELECT evaluated_at FROM transmissor.health_evaluations",
        )
        .fetch_one(&pool)
        .await
        .is_ok_and(|at| at > first)
    })
    .await;
    let (_, next_ms) = passes(0).await.context("second pass")?;

    let ibge = transmissor_tests::fleet::ibge(7);
    // (name, path, gzip): browsers always accept gzip; the plain answers
    // show what rendering alone costs.
    let targets: [(&str, String, bool); 7] = [
        ("healthz", "/healthz".into(), false),
        ("api_list", "/api/v1/municipalities".into(), false),
        ("api_list_gzip", "/api/v1/municipalities".into(), true),
        ("overview", "/".into(), false),
        ("overview_gzip", "/".into(), true),
        ("api_one", format!("/api/v1/municipalities/{ibge}"), false),
        ("page_one", format!("/m/{ibge}"), false),
    ];
    let mut results = Vec::new();
    for (name, path, gzip) in &targets {
        let mut times = Vec::new();
        let mut size = 0;
        let mut headers = vec![("Cookie", cookie.as_str())];
        if *gzip {
            headers.push(("Accept-Encoding", "gzip"));
        }
        for i in 0..=args.repeat {
            let t = Instant::now();
            let r = request(http, "GET", path, &headers, "", Some(&trust)).await?;
            let took = t.elapsed();
            if r.status != 200 {
                bail!("{path}: {} {}", r.status, &r.body[..r.body.len().min(300)]);
            }
            size = r.bytes.len();
            // The first request warms caches; it is not counted.
            if i > 0 {
                times.push(took);
            }
        }
        results.push((*name, median(times), size));
    }
    let mut db_times = Vec::new();
    for _ in 0..args.repeat {
        let t = Instant::now();
        let n = sqlx::query(
            "SELECT m.name, h.*, a.agent_version, a.pec_version, a.cert_not_after
             FROM transmissor.municipalities m
             JOIN transmissor.municipality_health h ON h.ibge = m.ibge
             LEFT JOIN transmissor.agents a ON a.ibge = m.ibge AND a.revoked_at IS NULL",
        )
        .fetch_all(&pool)
        .await?
        .len();
        db_times.push(t.elapsed());
        anyhow::ensure!(n >= args.municipalities, "{n} rows");
    }
    let db = median(db_times);
    let healthz = results[0].1;
    println!(
        "RESULT fleet municipalities={} transmissions={} days={}",
        seeded.municipalities, seeded.transmissions, args.days
    );
    println!("RESULT evaluator first_pass_ms={first_ms} next_pass_ms={next_ms}");
    println!(
        "RESULT anchor db_read_ms={:.1} healthz_ms={:.1}",
        db.as_secs_f64() * 1e3,
        healthz.as_secs_f64() * 1e3
    );
    for (name, took, size) in &results[1..] {
        println!(
            "RESULT {name} median_ms={:.1} bytes={size} x_healthz={:.1} x_db_read={:.1}",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() / healthz.as_secs_f64(),
            took.as_secs_f64() / db.as_secs_f64(),
        );
    }
    stack.stop_collector().await?;
    Ok(())
}
