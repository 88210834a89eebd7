//! Issue #11, the dashboard in a real browser: 5,570 municipalities in a
//! real PostgreSQL behind a real collector, driven by headless Chromium
//! (`tests/browser/dashboard.mjs`, playwright-core on Debian's
//! `/usr/bin/chromium`; `cargo xtask test` installs both). The script logs
//! in through the redirect, counts the overview's rows, filters by state and
//! by IBGE code, opens a municipality (states derived by the collector's
//! own evaluator from the seeded rows) and asks it to run now, the failures
//! page, English, and a
//! phone-sized overview, and saves screenshots under
//! `target/<profile>/dashboard-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use transmissor_tests::http::{get, request};
use transmissor_tests::operators::{add_operator, login, wait_http};
use transmissor_tests::pg::free_port;
use transmissor_tests::stack::{Stack, StackOptions};

/// Brazil's municipalities.
const MUNICIPALITIES: usize = 5570;
/// The one the harness enrolls (the rest are seeded).
const A: (&str, &str) = ("3550308", "São Paulo");
const OPERATOR: (&str, &str) = ("ana", "senha-da-ana-123");
const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Where the screenshots go: beside the test binaries, kept after the run.
fn screenshot_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile = exe
        .ancestors()
        .nth(2)
        .context("the test binary has no target directory")?;
    Ok(profile.join("dashboard-screenshots"))
}

/// Waits until the collector's evaluator has stored every municipality's
/// state (the overview lists evaluated ones).
async fn wait_until_evaluated(stack: &Stack, total: usize) -> Result<()> {
    let pool = stack.collector_pool().await?;
    let done = transmissor_tests::pg::wait_until(std::time::Duration::from_secs(300), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM transmissor.municipality_health")
            .fetch_one(&pool)
            .await
            .is_ok_and(|n| n as usize == total)
    })
    .await;
    ensure!(done, "the evaluator never stored {total} municipalities");
    Ok(())
}

/// Chromium and the script's packages, as `cargo xtask test` installs them.
fn browser_ready() -> Result<()> {
    ensure!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `cargo xtask test` (it installs Debian's chromium) or `apt-get install chromium`"
    );
    ensure!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run `cargo xtask test` or `npm ci` in tests/browser"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() -> Result<()> {
    browser_ready()?;
    let http_port = free_port();
    let mut stack = Stack::with_options(
        &[A],
        StackOptions {
            collector_extra_toml: format!(
                "\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n[monitor]\nevaluate_every = \"2s\"\n"
            ),
            ..Default::default()
        },
    )
    .await?;
    // The rest of the country: a synthetic fleet with five weeks of daily
    // transmissions and every kind of trouble (`transmissor_tests::fleet`).
    let pool = stack.collector_pool().await?;
    transmissor_tests::fleet::seed(&pool, MUNICIPALITIES - 1, 35, &["visitas"]).await?;
    stack.start_collector().await?;
    let http: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
    wait_http(http).await?;
    add_operator(&stack, OPERATOR.0, "operator", OPERATOR.1)?;
    wait_until_evaluated(&stack, MUNICIPALITIES).await?;

    // Without a session a page sends the browser to the login form.
    let r = get(http, "/m/3550308", Some(&stack.server_trust)).await?;
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/login?next=%2Fm%2F3550308"));

    // The overview goes gzipped to a client that accepts it.
    let cookie = login(http, &stack.server_trust, OPERATOR.0, OPERATOR.1)
        .await?
        .context("logs in")?;
    let overview = |gzip: bool| {
        let (cookie, trust) = (cookie.clone(), stack.server_trust.clone());
        async move {
            let mut headers = vec![("Cookie", cookie.as_str())];
            if gzip {
                headers.push(("Accept-Encoding", "gzip"));
            }
            request(http, "GET", "/", &headers, "", Some(&trust)).await
        }
    };
    let (plain, gzipped) = (overview(false).await?, overview(true).await?);
    assert_eq!((plain.status, gzipped.status), (200, 200));
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(gzipped.bytes.as_slice()),
        &mut unzipped,
    )?;
    eprintln!(
        "overview of {MUNICIPALITIES}: {} bytes, {} gzipped",
        plain.bytes.len(),
        gzipped.bytes.len()
    );
    // The same page: as many table rows.
    let unzipped = String::from_utf8(unzipped)?;
    ensure!(
        unzipped.matches("<tr").count() == plain.body.matches("<tr").count()
            && unzipped.matches("<tr").count() > MUNICIPALITIES,
        "the gzipped overview is not the page"
    );
    ensure!(
        gzipped.bytes.len() * 5 < plain.bytes.len(),
        "gzip should shrink the overview more than 5 times"
    );

    let shots = screenshot_dir()?;
    let out = Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .args(["--url", &format!("https://127.0.0.1:{http_port}")])
        .args(["--user", OPERATOR.0])
        .args(["--count", &MUNICIPALITIES.to_string()])
        .args(["--ibge", &transmissor_tests::fleet::ibge(7)])
        .arg("--screenshots")
        .arg(&shots)
        .env("DASHBOARD_PASSWORD", OPERATOR.1)
        .output()
        .context("running node tests/browser/dashboard.mjs")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    ensure!(
        out.status.success(),
        "the browser checks failed:\n{stdout}{stderr}"
    );
    // The browser's "run now" was stored, with the operator's name.
    let (ibge, by): (String, String) = sqlx::query_as(
        "SELECT ibge::text, requested_by FROM transmissor.run_requests WHERE taken_at IS NULL",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(ibge, transmissor_tests::fleet::ibge(7));
    assert_eq!(by, format!("operator:{} (web)", OPERATOR.0));
    for name in [
        "overview.png",
        "filtered.png",
        "municipality.png",
        "failures.png",
        "phone-overview.png",
    ] {
        let png = std::fs::read(shots.join(name)).with_context(|| name.to_string())?;
        ensure!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    }
    Ok(())
}
