//! Uploads that fit the link: with an `[upload]` window covering now (in
//! the municipality's time zone), everything the agent sends to the
//! collector — counted on the wire by a relay in between, TLS included —
//! arrives at no more than the cap (an upper bound: a busy machine only
//! slows it down), and the rows equal the source's. With a window that
//! does not cover now, the agent says the limit in force is unlimited.

use std::time::Duration;

use anyhow::{Result, bail};
use chrono::{Timelike, Utc};
use transmissor_tests::stack::{Job, Municipality, Stack, copy_dump};
use transmissor_tests::wire_meter::WireMeter;

const A: (&str, &str) = ("3550308", "São Paulo");
const ZONE: chrono_tz::Tz = chrono_tz::America::Manaus;
/// 4 Mbit/s in bytes per second.
const CAP: f64 = 500_000.0;

/// `HH:MM` in the municipality's zone, `hours` from now.
fn local_hhmm(hours: i64) -> String {
    let t = (Utc::now() + chrono::Duration::hours(hours)).with_timezone(&ZONE);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// A table of hex digests: about half of it survives compression.
async fn make_table(stack: &Stack, m: &Municipality, rows: u32) -> Result<()> {
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(&format!(
        "CREATE TABLE digests AS SELECT g::int8 AS id, \
         md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) AS payload \
         FROM generate_series(1, {rows}) g; ALTER TABLE digests ADD PRIMARY KEY (id)"
    ))
    .await?;
    stack.grant_reader(&m.db).await
}

/// An agent config whose collector is reached through `meter`.
fn config_via(
    stack: &Stack,
    m: &Municipality,
    meter: &WireMeter,
    window: &str,
) -> Result<std::path::PathBuf> {
    let job = Job::new(
        "digests",
        "snapshot",
        "digests",
        "SELECT id, payload FROM digests",
    );
    let extra = format!(
        "[spool]\nbatch_raw_bytes = \"512KiB\"\n\n[schedule]\ntimezone = \"{}\"\n\n[upload]\nbandwidth = [{window}]\n",
        ZONE.name()
    );
    let cfg = stack.agent_config(m, &[job], &extra)?;
    let text = std::fs::read_to_string(&cfg)?;
    let from = format!("endpoint = \"{}\"", stack.endpoint());
    if !text.contains(&from) {
        bail!("agent config without {from}");
    }
    std::fs::write(
        &cfg,
        text.replace(
            &from,
            &format!(
                "endpoint = \"https://{}\"\nserver_name = \"localhost\"",
                meter.addr
            ),
        ),
    )?;
    Ok(cfg)
}

async fn assert_rows_match(stack: &Stack, m: &Municipality) -> Result<()> {
    let src = stack.source.connect(&m.db).await?;
    let analytic = stack.analytic_client().await?;
    let s = copy_dump(&src, "SELECT id, payload FROM digests ORDER BY id").await?;
    let t = copy_dump(
        &analytic,
        &format!(
            "SELECT id, payload FROM analytic.digests WHERE _ibge = '{}' ORDER BY id",
            m.ibge
        ),
    )
    .await?;
    if s != t || s.is_empty() {
        bail!(
            "target ({} bytes) differs from source ({} bytes)",
            t.len(),
            s.len()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_upload_stays_under_the_cap_on_the_wire() -> Result<()> {
    let mut stack = Stack::new(&[A]).await?;
    let m = stack.munis[0].clone();
    // ~5.4 MB of COPY text, ~2.8 MB compressed: about 6 s at 4 Mbit/s.
    make_table(&stack, &m, 40_000).await?;
    stack.start_collector().await?;
    let meter = WireMeter::start(stack.collector_addr).await?;
    // A window from an hour ago to two hours ahead (it may cross midnight).
    let window = format!(
        "{{ from = \"{}\", to = \"{}\", limit = \"4 Mbit/s\" }}",
        local_hhmm(-1),
        local_hhmm(2)
    );
    let cfg = config_via(&stack, &m, &meter, &window)?;
    let mut agent = stack.spawn_agent(&cfg, "agent-capped.log")?;
    let status = agent.wait(Duration::from_secs(180)).await?;
    let log = agent.log_text();
    if !status.success() {
        bail!("agent failed ({status}):\n{log}");
    }
    assert!(
        log.contains("upload bandwidth limit in force") && log.contains("limit=4.000 Mbit/s"),
        "the cap is not reported in force:\n{log}"
    );
    for line in log.lines().filter(|l| l.contains("zstd level")) {
        println!("{line}");
    }
    let (bytes, span) = (meter.bytes(), meter.span().expect("bytes went through"));
    let rate = bytes as f64 / span.as_secs_f64();
    println!(
        "sent {bytes} bytes in {:.2} s: {:.0} B/s, {:.3} of the cap",
        span.as_secs_f64(),
        rate,
        rate / CAP
    );
    assert!(bytes >= 2_000_000, "only {bytes} bytes on the wire");
    assert!(
        rate <= 1.10 * CAP,
        "{rate:.0} B/s on the wire, above 110% of the {CAP} B/s cap"
    );
    assert_rows_match(&stack, &m).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_not_covering_now_leaves_the_upload_unlimited() -> Result<()> {
    let mut stack = Stack::new(&[A]).await?;
    let m = stack.munis[0].clone();
    make_table(&stack, &m, 5_000).await?;
    stack.start_collector().await?;
    let meter = WireMeter::start(stack.collector_addr).await?;
    // Two to three hours from now: not now.
    let window = format!(
        "{{ from = \"{}\", to = \"{}\", limit = \"1 Mbit/s\" }}",
        local_hhmm(2),
        local_hhmm(3)
    );
    let cfg = config_via(&stack, &m, &meter, &window)?;
    let mut agent = stack.spawn_agent(&cfg, "agent-unlimited.log")?;
    let status = agent.wait(Duration::from_secs(120)).await?;
    let log = agent.log_text();
    if !status.success() {
        bail!("agent failed ({status}):\n{log}");
    }
    let line = log
        .lines()
        .find(|l| l.contains("upload bandwidth limit in force"))
        .unwrap_or_else(|| panic!("no limit reported:\n{log}"));
    assert!(
        line.contains("limit=unlimited") && line.contains("outside every window"),
        "{line}"
    );
    assert!(
        !log.contains("upload bandwidth limit changed"),
        "the limit changed during a short run:\n{log}"
    );
    assert!(meter.bytes() > 0);
    assert_rows_match(&stack, &m).await?;
    Ok(())
}
