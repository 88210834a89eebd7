//! `cargo xtask bench-incremental`: what an incremental daily run sends
//! compared with a full snapshot of the same table.
//!
//! One municipality's PEC database (the test generator) holds `--care`
//! rows of `tb_fat_atendimento_individual`, given a last-modified column
//! `dt_atualizacao` (a day old). The agent (release build) has two jobs on
//! the same query: `completo` (`snapshot`, what the incumbent does every
//! day) and `incremental` (`upsert` by `co_seq_fat_atd_ind`, watermark
//! `dt_atualizacao`). Time is compressed: a "day" lasts a few seconds, so
//! the lookback is 1 s (a daily job's hour scaled down alike; a 1-hour
//! lookback here would re-read every earlier "day"). Day 0 loads both in full; then, for
//! each of `--days` days, `--inserts` new care records and `--updates`
//! changed ones are written (`dt_atualizacao = now()`) and the agent runs
//! both jobs. Both targets are checked against the source (row count and
//! an order-independent checksum of every column) after each day.
//!
//! Reported per day and job: rows sent, bytes before and after zstd (what
//! crossed the link), and the transmission's time at the collector; then
//! the ratio of the incremental job's compressed bytes to the snapshot's,
//! as `RESULT` lines.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use transmissor_tests::pec::Scale;
use transmissor_tests::stack::{Job, Stack};

#[derive(Args)]
pub struct IncrementalBenchArgs {
    /// Care records in the source.
    #[arg(long, default_value_t = 300_000)]
    care: u64,
    /// Days of changes after the first full load.
    #[arg(long, default_value_t = 5)]
    days: u32,
    /// New care records per day.
    #[arg(long, default_value_t = 1_500)]
    inserts: u64,
    /// Changed care records per day.
    #[arg(long, default_value_t = 500)]
    updates: u64,
}

pub fn run(args: IncrementalBenchArgs) -> Result<()> {
    crate::setup::with_binaries(true, |_| bench(args))
}

const QUERY: &str = "SELECT co_seq_fat_atd_ind, co_fat_cidadao_pec, nu_uuid_ficha, \
    dt_inicial_atendimento, dt_final_atendimento, nu_peso, nu_altura, nu_pressao_sistolica, \
    nu_pressao_diastolica, ds_filtro_cids, ds_filtro_ciaps, co_dim_municipio, co_dim_tempo, \
    co_dim_tipo_atendimento, co_dim_local_atendimento, co_dim_sexo, co_dim_profissional_1, \
    co_dim_cbo_1, co_dim_unidade_saude_1, co_dim_equipe_1, dt_atualizacao \
    FROM tb_fat_atendimento_individual";

/// One job's transmission of one day.
struct Sent {
    rows: i64,
    raw: i64,
    compressed: i64,
    seconds: f64,
}

async fn bench(args: IncrementalBenchArgs) -> Result<()> {
    let mut stack = Stack::new(&[("3550308", "São Paulo")]).await?;
    let m = stack.munis[0].clone();
    println!("==> loading {} care records", args.care);
    stack
        .load_pec(
            &m,
            7,
            &Scale {
                citizens: (args.care / 10).max(100),
                visits: 100,
                care: args.care,
            },
        )
        .await?;
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(
        "ALTER TABLE tb_fat_atendimento_individual \
           ADD COLUMN dt_atualizacao timestamptz NOT NULL DEFAULT now() - interval '1 day'; \
         ALTER TABLE tb_fat_atendimento_individual ALTER dt_atualizacao SET DEFAULT now()",
    )
    .await?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector().await?;
    let jobs = [
        Job::new("completo", "snapshot", "atd_completo", QUERY),
        Job::upsert(
            "incremental",
            "atd_incremental",
            QUERY,
            &["co_seq_fat_atd_ind"],
            "dt_atualizacao",
            "1s",
        ),
    ];
    let cfg = stack.agent_config(&m, &jobs, "")?;
    let analytic = stack.analytic_client().await?;
    // The checksums read timestamps as text: the same zone on both sides.
    analytic.batch_execute("SET TimeZone = 'UTC'").await?;
    src.batch_execute("SET TimeZone = 'UTC'").await?;

    let mut days: Vec<(Sent, Sent)> = Vec::new();
    for day in 0..=args.days {
        if day > 0 {
            src.batch_execute(&format!(
                "INSERT INTO tb_fat_atendimento_individual \
                   (co_seq_fat_atd_ind, co_fat_cidadao_pec, nu_uuid_ficha, dt_inicial_atendimento, \
                    dt_final_atendimento, nu_peso, nu_altura, ds_filtro_cids, co_dim_municipio) \
                 SELECT m + g, (m + g) % 1000, md5((m + g)::text), now() - interval '1 hour', now(), \
                        60 + g % 40, 1.5 + (g % 50) / 100.0, '|I10|', 1 \
                 FROM (SELECT max(co_seq_fat_atd_ind) AS m FROM tb_fat_atendimento_individual) s, \
                      generate_series(1, {ins}) g; \
                 UPDATE tb_fat_atendimento_individual SET nu_peso = coalesce(nu_peso, 0) + 1, \
                        dt_atualizacao = now() \
                 WHERE co_seq_fat_atd_ind IN (SELECT co_seq_fat_atd_ind FROM tb_fat_atendimento_individual \
                                              ORDER BY md5(co_seq_fat_atd_ind::text || '{day}') LIMIT {upd})",
                ins = args.inserts,
                upd = args.updates,
            ))
            .await?;
        }
        // The "night" between the day's writes and the run: longer than
        // the 1 s lookback, as a real night is longer than a real lookback.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut agent = stack.spawn_agent(&cfg, &format!("agent-day{day}.log"))?;
        let status = agent.wait(Duration::from_secs(1800)).await?;
        if !status.success() {
            bail!("the agent run of day {day} failed:\n{}", agent.log_text());
        }
        let sent = |job: &'static str| {
            let analytic = &analytic;
            async move {
                let r = analytic
                    .query_one(
                        "SELECT rows, raw_bytes, compressed_bytes, \
                           extract(epoch FROM finished_at - started_at)::float8 \
                         FROM transmissor.transmissions WHERE job = $1 AND state = 'committed' \
                         ORDER BY id DESC LIMIT 1",
                        &[&job],
                    )
                    .await
                    .with_context(|| format!("{job}'s transmission"))?;
                Ok::<_, anyhow::Error>(Sent {
                    rows: r.get(0),
                    raw: r.get(1),
                    compressed: r.get(2),
                    seconds: r.get(3),
                })
            }
        };
        let (full, inc) = (sent("completo").await?, sent("incremental").await?);
        for target in ["atd_completo", "atd_incremental"] {
            let sql = |from: &str| {
                format!(
                    "SELECT count(*), coalesce(sum(hashtext(t::text)::int8), 0)::int8 FROM \
                     (SELECT {} FROM {from}) t",
                    QUERY
                        .trim_start_matches("SELECT ")
                        .split(" FROM ")
                        .next()
                        .unwrap_or("*")
                )
            };
            let s = src
                .query_one(&sql("tb_fat_atendimento_individual"), &[])
                .await?;
            let t = analytic
                .query_one(
                    &sql(&format!("analytic.{target} WHERE _ibge = '3550308'")),
                    &[],
                )
                .await?;
            let (sc, ss): (i64, i64) = (s.get(0), s.get(1));
            let (tc, ts): (i64, i64) = (t.get(0), t.get(1));
            if (sc, ss) != (tc, ts) {
                bail!(
                    "day {day}: {target} holds {tc} rows (checksum {ts}), the source {sc} ({ss})"
                );
            }
        }
        println!(
            "day {day}: snapshot {} rows, {} → {} bytes, {:.2} s | incremental {} rows, {} → {} bytes, {:.2} s",
            full.rows,
            full.raw,
            full.compressed,
            full.seconds,
            inc.rows,
            inc.raw,
            inc.compressed,
            inc.seconds
        );
        days.push((full, inc));
    }
    let later = &days[1..];
    let sum = |f: &dyn Fn(&(Sent, Sent)) -> i64| later.iter().map(f).sum::<i64>();
    let full_c = sum(&|d| d.0.compressed);
    let inc_c = sum(&|d| d.1.compressed);
    println!("RESULT incremental_days={}", later.len());
    println!(
        "RESULT snapshot_daily_compressed_bytes={}",
        full_c / later.len().max(1) as i64
    );
    println!(
        "RESULT incremental_daily_compressed_bytes={}",
        inc_c / later.len().max(1) as i64
    );
    println!(
        "RESULT incremental_over_snapshot_bytes={:.4}",
        inc_c as f64 / full_c.max(1) as f64
    );
    println!(
        "RESULT first_full_upsert_over_snapshot_bytes={:.3}",
        days[0].1.compressed as f64 / days[0].0.compressed.max(1) as f64
    );
    Ok(())
}
