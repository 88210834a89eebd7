//! The zstd level variants of `cargo xtask bench`: the agent's automatic
//! choice against forced levels 1, 3, 9 and 19 in the same setting and run,
//! and an upload under a bandwidth cap whose bytes a relay counts on the
//! wire (TLS included).
//!
//! Every variant runs in the same agent state directory, so the link
//! estimate the agent keeps (`<state_dir>/link.json`) carries over from
//! run to run, as on a real installation.

use std::collections::BTreeMap;

use anyhow::Result;

use transmissor_agent::pipeline::level::DEFAULT_LEVEL;
use transmissor_tests::stack::Job;
use transmissor_tests::wire_meter::WireMeter;

use super::{Setting, TABLES, checkpoint, expect_rows, median, transmit_with};

/// `None`: automatic.
const VARIANTS: [Option<i32>; 5] = [None, Some(1), Some(3), Some(9), Some(19)];

fn name(v: Option<i32>) -> String {
    v.map_or_else(|| "auto".to_string(), |l| l.to_string())
}

/// The levels an agent log shows, in order: `3→12`.
pub(super) fn picked(log: &str) -> String {
    let mut seq = vec![DEFAULT_LEVEL.to_string()];
    for line in log.lines().filter(|l| l.contains("zstd level changed")) {
        if let Some(to) = field(line, "to=") {
            seq.push(to);
        }
    }
    seq.dedup();
    seq.join("→")
}

fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!(" {key}"))? + 1 + key.len();
    Some(
        line[at..]
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_string(),
    )
}

#[derive(Default)]
struct Tally {
    seconds: BTreeMap<&'static str, Vec<f64>>,
    compressed: i64,
    raw: i64,
    picked: Vec<String>,
}

impl Tally {
    fn total(&self) -> f64 {
        self.seconds.values().map(|s| median(s)).sum()
    }
}

async fn last_transmission(setting: &Setting) -> Result<(i64, i64)> {
    let r = setting
        .stack
        .analytic_client()
        .await?
        .query_one(
            "SELECT compressed_bytes, raw_bytes FROM transmissor.transmissions \
             WHERE state = 'committed' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// Runs every variant `repeat` times per table; prints a table and
/// returns `RESULT` lines prefixed with `prefix`.
pub(super) async fn compare(setting: &Setting, repeat: u32, prefix: &str) -> Result<Vec<String>> {
    if repeat == 0 {
        return Ok(Vec::new());
    }
    let (stack, m) = (&setting.stack, &setting.m);
    let src = stack.source.connect(&m.db).await?;
    let analytic = stack.analytic_client().await?;
    println!(
        "==> {}: zstd level auto against forced 1, 3, 9, 19; {repeat} run(s) each per table",
        setting.label
    );
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for i in 1..=repeat {
        for (table, _) in TABLES {
            for v in VARIANTS {
                let extra = v.map_or_else(String::new, |l| format!("[spool]\nzstd_level = {l}\n"));
                let job = Job::new(
                    "bench",
                    "snapshot",
                    table,
                    &format!("SELECT * FROM {table}"),
                );
                checkpoint(&src, &analytic).await?;
                let log = format!("agent-levels-{prefix}{i}-{table}-{}.log", name(v));
                let r =
                    transmit_with(setting, job, &extra, setting.endpoint.as_deref(), &log).await?;
                expect_rows(
                    &analytic,
                    &format!(
                        "SELECT count(*) FROM analytic.{table} WHERE _ibge = '{}'",
                        m.ibge
                    ),
                    setting.rows[table],
                    "transmissor",
                )
                .await?;
                let (compressed, raw) = last_transmission(setting).await?;
                let seq =
                    picked(&std::fs::read_to_string(stack.dir.join(&log)).unwrap_or_default());
                let shown = if v.is_none() { seq.clone() } else { name(v) };
                println!(
                    "    {prefix}levels run {i} {table:<30} {:<5} {:>8.2}s  wire/raw {:.3}  level {shown}",
                    name(v),
                    r.seconds,
                    compressed as f64 / raw.max(1) as f64
                );
                let t = tallies.entry(name(v)).or_default();
                t.seconds.entry(table).or_default().push(r.seconds);
                t.compressed += compressed;
                t.raw += raw;
                if v.is_none() {
                    t.picked.push(format!("{table}: {seq}"));
                }
            }
        }
    }
    let auto = &tallies["auto"];
    let auto_s = auto.total();
    println!(
        "\n{}: zstd levels, both tables, median of {repeat}",
        setting.label
    );
    println!(
        "{:<6} {:>10} {:>10} {:>12}",
        "level", "time (s)", "× auto", "wire/raw"
    );
    let mut lines = vec![format!("{prefix}level_auto_seconds={auto_s:.2}")];
    let mut best_fixed = f64::INFINITY;
    for v in VARIANTS {
        let t = &tallies[&name(v)];
        let s = t.total();
        let ratio = t.compressed as f64 / t.raw.max(1) as f64;
        println!(
            "{:<6} {s:>10.2} {:>10.3} {ratio:>12.3}",
            name(v),
            s / auto_s
        );
        match v {
            None => lines.push(format!("{prefix}level_auto_wire_over_raw={ratio:.3}")),
            Some(l) => {
                best_fixed = best_fixed.min(s);
                lines.push(format!("{prefix}level_{l}_over_auto={:.3}", s / auto_s));
            }
        }
    }
    println!("levels the agent picked: {}", auto.picked.join("; "));
    lines.push(format!(
        "{prefix}level_auto_over_best_fixed={:.3}",
        auto_s / best_fixed
    ));
    Ok(lines)
}

/// One upload of `rows` visits under a cap of `mbit` (a window covering
/// the whole day), through a relay that counts the bytes on the wire from
/// the first connection to the last byte (so the compression of the first
/// batch, before anything can be sent, is inside the span).
pub(super) async fn cap_run(setting: &Setting, mbit: u32, rows: u64) -> Result<Vec<String>> {
    let (stack, m) = (&setting.stack, &setting.m);
    let src = stack.source.connect(&m.db).await?;
    let analytic = stack.analytic_client().await?;
    let filter = format!("co_seq_fat_visita_domiciliar <= {rows}");
    let n: i64 = src
        .query_one(
            &format!("SELECT count(*) FROM tb_fat_visita_domiciliar WHERE {filter}"),
            &[],
        )
        .await?
        .get(0);
    let meter = WireMeter::start(stack.collector_addr).await?;
    let endpoint = format!("https://{}", meter.addr);
    let job = Job::new(
        "bench_cap",
        "snapshot",
        "bench_cap",
        &format!("SELECT * FROM tb_fat_visita_domiciliar WHERE {filter}"),
    );
    // 1 MiB batches: the upload starts after the first one is compressed,
    // so smaller batches fill the pipeline sooner on a short job.
    let extra = format!(
        "[spool]\nbatch_raw_bytes = \"1MiB\"\n\n[upload]\nbandwidth = [{{ from = \"00:00\", to = \"24:00\", limit = \"{mbit} Mbit/s\" }}]\n"
    );
    println!(
        "==> {}: {n} visits under a {mbit} Mbit/s cap, counted on the wire",
        setting.label
    );
    checkpoint(&src, &analytic).await?;
    let log = "agent-cap.log";
    let r = transmit_with(setting, job, &extra, Some(&endpoint), log).await?;
    expect_rows(
        &analytic,
        &format!(
            "SELECT count(*) FROM analytic.bench_cap WHERE _ibge = '{}'",
            m.ibge
        ),
        n as u64,
        "transmissor under a cap",
    )
    .await?;
    let bytes = meter.bytes();
    let span = meter.span().map_or(f64::NAN, |d| d.as_secs_f64());
    let cap = f64::from(mbit) * 1e6 / 8.0;
    let achieved = bytes as f64 / span;
    let seq = picked(&std::fs::read_to_string(stack.dir.join(log)).unwrap_or_default());
    println!(
        "cap {mbit} Mbit/s: {bytes} bytes on the wire in {span:.2} s ({:.3} Mbit/s, {:.3} of the cap); run {:.2} s; level {seq}",
        achieved * 8.0 / 1e6,
        achieved / cap,
        r.seconds
    );
    Ok(vec![
        format!("cap_mbit={mbit}"),
        format!("cap_wire_bytes={bytes}"),
        format!("cap_achieved_over_cap={:.3}", achieved / cap),
        format!("cap_run_seconds={:.2}", r.seconds),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_read_from_the_agent_log() {
        let log = "2026-12-01T10:00:00Z  INFO zstd level: no link measurement yet level=3\n\
                   2026-12-01T10:00:01Z  INFO zstd level changed job=bench from=3 to=12 link_mib_per_s=2.4\n\
                   2026-12-01T10:00:02Z  INFO zstd level changed job=bench from=12 to=15 link_mib_per_s=1.1\n";
        assert_eq!(picked(log), "3→12→15");
        assert_eq!(picked(""), "3");
    }
}
