//! Incremental upsert jobs, end to end with the real binaries and a signed
//! plan: the first run is full; later runs read only rows changed since the
//! committed watermark (minus the lookback); updates replace rows by key;
//! a row committed late by a transaction left open during an extraction is
//! picked up by a later run, because the watermark a snapshot proves stops
//! before that transaction; rows deleted at the source are removed by a
//! scheduled reconciliation (a full run); the analytic rows equal the
//! source's, row for row, after every run. A transmission from an older
//! snapshot committed after a newer one is superseded (nothing loaded, the
//! watermark unchanged); a replayed commit changes nothing; a key that is
//! not unique fails the transmission with a message naming it; a key the
//! plan does not define is refused. The collector killed during a full and
//! an incremental upload, and the agent during an incremental one: nothing
//! lost, nothing doubled, the watermark never backwards.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use tonic::Code;
use uuid::Uuid;

use transmissor_proto::checksum::TransmissionDigest;
use transmissor_proto::pb;
use transmissor_tests::client;
use transmissor_tests::pg::wait_until;
use transmissor_tests::plans::{PlanKey, run_now};
use transmissor_tests::stack::{Municipality, Stack, StackOptions, copy_dump};

const A: (&str, &str) = ("3550308", "São Paulo");
const IBGE: &str = "3550308";

const SOURCE: &str = "
CREATE TABLE registro (
    id         bigint PRIMARY KEY,
    nome       text,
    valor      numeric(12,2),
    atualizado timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE evento (
    id         bigint,
    parte      integer,
    descricao  text,
    alterado   timestamp NOT NULL DEFAULT localtimestamp,
    PRIMARY KEY (id, parte)
);
-- No autovacuum ANALYZE (it takes a transaction id) may be open during a
-- run: the test asserts what a snapshot without open writers proves.
ALTER TABLE registro SET (autovacuum_enabled = off);
ALTER TABLE evento SET (autovacuum_enabled = off);
-- Written an hour ago: outside the lookback of the runs that follow.
INSERT INTO registro (id, nome, valor, atualizado)
    SELECT g, 'nome ' || g, g * 1.5, now() - interval '1 hour' FROM generate_series(1, 1000) g;
INSERT INTO evento (id, parte, descricao, alterado)
    SELECT g / 3, g % 3, 'evento ' || g, localtimestamp - interval '1 hour'
    FROM generate_series(1, 600) g;
";

fn plan(version: u64) -> String {
    format!(
        r#"format = 1
version = {version}
issued_at = 2026-01-01T00:00:00Z
expires_at = 2099-01-01T00:00:00Z
scope = "all"

[[jobs]]
name = "registros"
target = "up_registro"
mode = "upsert"
sql = "SELECT id, nome, valor, atualizado FROM registro"
schedule = {{ cron = "30 2 * * 1-5" }}
key = ["id"]
watermark = "atualizado"
lookback = "1s"
[jobs.columns]
nome = "send"  # a name column: the plan must classify it (synthetic data)

[[jobs]]
name = "eventos"
target = "up_evento"
mode = "upsert"
sql = "SELECT id, parte, descricao, alterado FROM evento"
schedule = {{ cron = "30 2 * * 1-5" }}
key = ["id", "parte"]
watermark = "alterado"
lookback = "1s"

[[jobs]]
name = "reconciliados"
target = "up_registro_rec"
mode = "upsert"
sql = "SELECT id, nome, valor, atualizado FROM registro"
schedule = {{ cron = "30 2 * * 1-5" }}
key = ["id"]
watermark = "atualizado"
lookback = "1s"
reconcile = {{ cron = "* * * * *" }}
[jobs.columns]
nome = "send"
"#
    )
}

struct Ctx {
    stack: Stack,
    m: Municipality,
    cfg: std::path::PathBuf,
}

impl Ctx {
    async fn source(&self) -> Result<tokio_postgres::Client> {
        self.stack.source.connect(&self.m.db).await
    }

    /// The target slice equals the source, row for row (COPY text dumps of
    /// the same columns, ordered by key, in UTC).
    async fn assert_equal(&self, table: &str, target: &str, cols: &str, key: &str) -> Result<()> {
        let src = self.source().await?;
        src.batch_execute("SET TimeZone = 'UTC'").await?;
        let want = copy_dump(&src, &format!("SELECT {cols} FROM {table} ORDER BY {key}")).await?;
        let an = self.stack.analytic_client().await?;
        an.batch_execute("SET TimeZone = 'UTC'").await?;
        let got = copy_dump(
            &an,
            &format!("SELECT {cols} FROM analytic.{target} WHERE _ibge = '{IBGE}' ORDER BY {key}"),
        )
        .await?;
        assert!(
            want == got,
            "{target} differs from the source's {table}: {} source bytes, {} target bytes",
            want.len(),
            got.len()
        );
        Ok(())
    }

    async fn assert_all_equal(&self) -> Result<()> {
        self.assert_equal(
            "registro",
            "up_registro",
            "id, nome, valor, atualizado",
            "id",
        )
        .await?;
        self.assert_equal(
            "evento",
            "up_evento",
            "id, parte, descricao, alterado",
            "id, parte",
        )
        .await
    }

    fn run(&self, jobs: &[&str]) -> Result<String> {
        let (ok, out) = run_now(&self.cfg, jobs)?;
        assert!(ok, "agent run failed:\n{out}");
        Ok(out)
    }

    /// The latest committed transmission of `job`: (rows, full, updated,
    /// deleted, since).
    async fn last(&self, job: &str) -> Result<(i64, bool, i64, i64, Option<DateTime<Utc>>)> {
        let r = self
            .stack
            .analytic_client()
            .await?
            .query_one(
                "SELECT rows, full_extract, updated_rows, deleted_rows, since \
                 FROM transmissor.transmissions WHERE job = $1 AND state = 'committed' \
                 ORDER BY id DESC LIMIT 1",
                &[&job],
            )
            .await?;
        Ok((
            r.get(0),
            r.get::<_, Option<bool>>(1).unwrap_or(false),
            r.get::<_, Option<i64>>(2).unwrap_or(0),
            r.get::<_, Option<i64>>(3).unwrap_or(0),
            r.get::<_, Option<std::time::SystemTime>>(4)
                .map(DateTime::<Utc>::from),
        ))
    }

    /// The job's committed (watermark, snapshot_at, reconciled_at).
    async fn watermark(
        &self,
        job: &str,
    ) -> Result<(Option<DateTime<Utc>>, DateTime<Utc>, Option<DateTime<Utc>>)> {
        let r = self
            .stack
            .analytic_client()
            .await?
            .query_one(
                "SELECT watermark, snapshot_at, reconciled_at FROM transmissor.watermarks \
                 WHERE ibge = $1 AND job = $2",
                &[&IBGE, &job],
            )
            .await?;
        let t = |i: usize| {
            r.get::<_, Option<std::time::SystemTime>>(i)
                .map(DateTime::<Utc>::from)
        };
        Ok((t(0), t(1).context("snapshot_at")?, t(2)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_match_the_source_row_for_row() -> Result<()> {
    let plan_keys = tempfile::tempdir()?;
    let key = PlanKey::generate(plan_keys.path(), "k")?;
    let mut stack = Stack::with_options(
        &[A],
        StackOptions {
            plans_required: true,
            plans_extra: transmissor_tests::plans::collector_plan_keys(&[&key], None),
            ..Default::default()
        },
    )
    .await?;
    let m = stack.munis[0].clone();
    // The watermark of a `timestamp without time zone` column is the
    // municipality's local time (the agent's [schedule] timezone): the
    // source's sessions write local times from here on.
    stack
        .source
        .connect(&m.db)
        .await?
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET timezone = 'America/Sao_Paulo'",
            m.db
        ))
        .await?;
    stack
        .source
        .connect(&m.db)
        .await?
        .batch_execute(SOURCE)
        .await?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector().await?;
    let cfg = stack.agent_config(&m, &[], &format!("[plan]\nkeys = [\"{}\"]\n", key.public))?;
    let v1 = key.sign_plan(&stack.dir, "v1", &plan(1))?;
    stack.publish_plan("v1", &v1)?;
    stack.wait_served(&m, &v1).await?;
    let ctx = Ctx { stack, m, cfg };

    // Run 1: no watermark yet, so every row is read.
    ctx.run(&["registros", "eventos"])?;
    ctx.assert_all_equal().await?;
    let (rows, full, ..) = ctx.last("registros").await?;
    assert_eq!((rows, full), (1000, true));
    let (w1, s1, r1) = ctx.watermark("registros").await?;
    let w1 = w1.context("a snapshot with no writer open proves its own time")?;
    assert_eq!(r1, Some(s1), "a full commit is a reconciliation");

    // Run 2: 50 updates and 100 inserts; only changed rows (and those in
    // the 1 s lookback) are read.
    let src = ctx.source().await?;
    src.batch_execute(
        "UPDATE registro SET nome = nome || ' (alterado)', valor = valor + 1, atualizado = now() WHERE id % 20 = 0;
         INSERT INTO registro (id, nome, valor) SELECT g, 'novo ' || g, g FROM generate_series(1001, 1100) g;
         UPDATE evento SET descricao = 'mudou', alterado = localtimestamp WHERE parte = 1 AND id < 30;",
    )
    .await?;
    ctx.run(&["registros", "eventos"])?;
    ctx.assert_all_equal().await?;
    let (rows, full, updated, _, since) = ctx.last("registros").await?;
    assert!(!full, "the second run is incremental");
    assert!((150..1100).contains(&rows), "run 2 sent {rows} rows");
    assert!(updated >= 50, "{updated} rows replaced");
    assert!(
        since.is_some_and(|s| s < w1),
        "since {since:?} is the watermark minus the lookback"
    );
    let (rows, full, ..) = ctx.last("eventos").await?;
    assert!(
        !full && rows < 600,
        "eventos sent {rows} rows (full: {full})"
    );
    let (w2, s2, _) = ctx.watermark("registros").await?;
    let w2 = w2.context("watermark")?;
    assert_eq!(
        w2, s2,
        "no writer was open: the snapshot proves its own time"
    );
    assert!(w2 >= w1);

    // Run 3: a transaction open during the extraction updates row 7; a
    // committed one updates row 8 after it started.
    let late = ctx.source().await?;
    late.batch_execute(
        "BEGIN; UPDATE registro SET nome = 'tardio', atualizado = now() WHERE id = 7",
    )
    .await?;
    let late_time: std::time::SystemTime = late.query_one("SELECT now()", &[]).await?.get(0);
    let late_time = DateTime::<Utc>::from(late_time);
    src.batch_execute("UPDATE registro SET nome = 'cedo', atualizado = now() WHERE id = 8")
        .await?;
    ctx.run(&["registros"])?;
    let (w3, ..) = ctx.watermark("registros").await?;
    let w3 = w3.context("watermark")?;
    assert!(
        w3 < late_time,
        "the watermark ({w3}) must stop before the open transaction's time ({late_time})"
    );
    assert!(w3 >= w2, "never backwards");
    let an = ctx.stack.analytic_client().await?;
    let name = |id: i64| {
        let an = &an;
        async move {
            an.query_one(
                "SELECT nome FROM analytic.up_registro WHERE _ibge = $1 AND id = $2",
                &[&IBGE, &id],
            )
            .await
            .map(|r| r.get::<_, String>(0))
        }
    };
    assert_eq!(name(8).await?, "cedo");
    assert_ne!(name(7).await?, "tardio", "not committed yet");
    late.batch_execute("COMMIT").await?;

    // Run 4: the late row is read, because the bound is before its time.
    ctx.run(&["registros"])?;
    assert_eq!(name(7).await?, "tardio");
    ctx.assert_all_equal().await?;

    // Deletes: an incremental run cannot see them...
    src.batch_execute("DELETE FROM registro WHERE id BETWEEN 500 AND 509")
        .await?;
    ctx.run(&["registros"])?;
    let target_count = |t: &'static str| {
        let an = &an;
        async move {
            an.query_one(
                &format!("SELECT count(*) FROM analytic.{t} WHERE _ibge = '{IBGE}'"),
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
        }
    };
    assert_eq!(
        target_count("up_registro").await?,
        1100,
        "deleted rows stay until a reconciliation"
    );

    // ...a reconciliation does: job `reconciliados` reconciles every
    // minute (its first run was full; the next minute's slot makes the run
    // after it full again).
    ctx.run(&["reconciliados"])?;
    let (_, s_rec, _) = ctx.watermark("reconciliados").await?;
    src.batch_execute("DELETE FROM registro WHERE id BETWEEN 600 AND 604")
        .await?;
    let minute = |t: DateTime<Utc>| t.timestamp() / 60;
    assert!(
        wait_until(Duration::from_secs(70), || async {
            minute(Utc::now()) > minute(s_rec)
        })
        .await
    );
    let out = ctx.run(&["reconciliados"])?;
    let (_, full, _, deleted, _) = ctx.last("reconciliados").await?;
    assert!(full, "the reconcile slot made the run full:\n{out}");
    // Its first (full) run came after the first deletes: 5 rows to remove.
    assert_eq!(deleted, 5, "the rows deleted at the source are deleted");
    ctx.assert_equal(
        "registro",
        "up_registro_rec",
        "id, nome, valor, atualizado",
        "id",
    )
    .await?;

    // A replayed commit and an older snapshot never move the watermark back.
    let (w_before, s_before, _) = ctx.watermark("registros").await?;
    let mut grpc = client::transmission(
        &ctx.stack.endpoint(),
        &ctx.stack.server_trust,
        Some((&ctx.m.cert, &ctx.m.key)),
    )?;
    let last_id: i64 = an
        .query_one(
            "SELECT max(id) FROM transmissor.transmissions WHERE job = 'registros' AND state = 'committed'",
            &[],
        )
        .await?
        .get(0);
    let (batches, rows_sent): (i32, i64) = {
        let r = an
            .query_one(
                "SELECT batches, rows FROM transmissor.transmissions WHERE id = $1",
                &[&last_id],
            )
            .await?;
        (r.get(0), r.get(1))
    };
    let replay = grpc
        .commit(pb::CommitRequest {
            transmission_id: last_id,
            total_batches: batches as u32,
            total_rows: rows_sent as u64,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(replay.state, pb::State::Committed as i32);
    assert_eq!(ctx.watermark("registros").await?.0, w_before);

    let old = s_before - chrono::Duration::hours(1);
    let cols = [
        ("id", "bigint"),
        ("nome", "text"),
        ("valor", "numeric(12,2)"),
        ("atualizado", "timestamp with time zone"),
    ];
    let begin = |key: &[&str], watermark: &str, snapshot_at: DateTime<Utc>| pb::BeginRequest {
        run_id: Uuid::new_v4().to_string(),
        job: "registros".into(),
        mode: pb::Mode::Upsert as i32,
        target: "up_registro".into(),
        columns: cols
            .iter()
            .map(|(n, t)| pb::Column {
                name: n.to_string(),
                source_type: t.to_string(),
                target_type: t.to_string(),
                pseudonymised: false,
            })
            .collect(),
        plan_version: "plan:1".into(),
        plan: 1,
        upsert: Some(pb::Upsert {
            key: key.iter().map(|k| k.to_string()).collect(),
            watermark: watermark.into(),
            snapshot_at_us: snapshot_at.timestamp_micros(),
            proves_watermark_us: Some(snapshot_at.timestamp_micros()),
        }),
        ..Default::default()
    };
    // Rows that would overwrite row 1 with stale values.
    let stale = b"1\tobsoleto\t0.00\t2020-01-01 00:00:00+00\n";
    let base = grpc.clone();
    let send = move |begin: pb::BeginRequest, raw: &'static [u8], rows: u64| {
        let mut grpc = base.clone();
        async move {
            let b = grpc.begin(begin).await?.into_inner();
            let id = b.transmission_id;
            grpc.put_batch(client::batch(id, 1, raw, rows)).await?;
            let mut d = TransmissionDigest::new();
            d.add(1, rows, transmissor_proto::checksum::crc32c(raw));
            Ok::<_, tonic::Status>(
                grpc.commit(pb::CommitRequest {
                    transmission_id: id,
                    total_batches: 1,
                    total_rows: rows,
                    digest: d.finish(),
                    ..Default::default()
                })
                .await,
            )
        }
    };
    let older = send(begin(&["id"], "atualizado", old), stale, 1)
        .await?
        .context("commit of an older snapshot")?
        .into_inner();
    assert!(older.superseded, "an older snapshot is superseded");
    assert_eq!(older.state, pb::State::Aborted as i32);
    assert_ne!(name(1).await?, "obsoleto", "nothing of it was loaded");
    assert_eq!(ctx.watermark("registros").await?.0, w_before);
    assert_eq!(ctx.watermark("registros").await?.1, s_before);

    // A key the plan does not define is refused at Begin.
    let err = grpc
        .begin(begin(&["nome"], "atualizado", Utc::now()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("merges by key (id)"),
        "{}",
        err.message()
    );

    // A key that is not unique fails the transmission, naming the key.
    let dup: &'static [u8] =
        b"1\ta\t1.00\t2030-01-01 00:00:00+00\n1\tb\t2.00\t2030-01-01 00:00:00+00\n";
    let failed = send(begin(&["id"], "atualizado", Utc::now()), dup, 2)
        .await?
        .unwrap_err();
    assert_eq!(failed.code(), Code::FailedPrecondition, "{failed:?}");
    assert!(
        failed
            .message()
            .contains("key values (id) appear on more than one row"),
        "{}",
        failed.message()
    );
    assert_ne!(name(1).await?, "a");
    // The job without a reconcile schedule still holds the 15 rows deleted
    // at the source, and nothing else changed.
    assert_eq!(target_count("up_registro").await?, 1100);
    Ok(())
}

/// Batches held by open transmissions.
async fn open_batches(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM transmissor.batches b JOIN transmissor.transmissions t \
             ON t.id = b.transmission_id WHERE t.state = 'open'",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// Nothing lost, nothing doubled, the watermark never backwards: the
/// collector is SIGKILLed during a full and an incremental upload, the
/// agent during an incremental upload; after each recovery the target
/// equals the source row for row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_survives_kills_mid_flight() -> Result<()> {
    let mut stack = Stack::new(&[A]).await?;
    let m = stack.munis[0].clone();
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(
        "CREATE TABLE grande (id bigint PRIMARY KEY, payload text, atualizado timestamptz NOT NULL DEFAULT now());
         INSERT INTO grande SELECT g, repeat(md5(g::text), 2), now() - interval '1 hour'
         FROM generate_series(1, 100000) g;",
    )
    .await?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector().await?;
    let job = transmissor_tests::stack::Job::upsert(
        "grande_up",
        "grande_upsert",
        "SELECT id, payload, atualizado FROM grande",
        &["id"],
        "atualizado",
        "1s",
    );
    let cfg = stack.agent_config(&m, &[job], "[spool]\nbatch_raw_bytes = \"16KiB\"\n\n")?;
    let analytic = stack.analytic_client().await?;
    let mut ctx = Ctx {
        stack,
        m,
        cfg: cfg.clone(),
    };
    let mut seen: Vec<(Option<DateTime<Utc>>, DateTime<Utc>)> = Vec::new();

    for (round, change) in [
        "",
        "UPDATE grande SET payload = md5(payload), atualizado = now() WHERE id % 3 = 0;
         INSERT INTO grande SELECT g, 'novo', now() FROM generate_series(100001, 105000) g;",
        "UPDATE grande SET payload = 'de novo', atualizado = now() WHERE id % 4 = 1;",
    ]
    .iter()
    .enumerate()
    {
        src.batch_execute(change).await?;
        let mut agent = ctx.stack.spawn_agent(&cfg, &format!("agent-{round}.log"))?;
        let threshold = 30;
        let reached = wait_until(Duration::from_secs(120), || async {
            open_batches(&analytic).await >= threshold
        })
        .await;
        assert!(
            reached,
            "round {round}: upload never reached {threshold} batches:\n{}",
            agent.log_text()
        );
        if round == 1 {
            // The agent dies mid-upload; its next run resumes from the spool.
            agent.kill();
            agent = ctx
                .stack
                .spawn_agent(&cfg, &format!("agent-{round}b.log"))?;
        } else {
            ctx.stack.kill_collector();
            ctx.stack.start_collector().await?;
        }
        let status = agent.wait(Duration::from_secs(300)).await?;
        assert!(
            status.success(),
            "round {round}: agent failed:\n{}",
            agent.log_text()
        );
        ctx.assert_equal("grande", "grande_upsert", "id, payload, atualizado", "id")
            .await?;
        let (w, s, _) = ctx.watermark("grande_up").await?;
        if let Some((w0, s0)) = seen.last() {
            assert!(
                w >= *w0 && s >= *s0,
                "round {round}: watermark {w0:?}/{s0} → {w:?}/{s}"
            );
        }
        seen.push((w, s));
    }
    // The rounds after the first were incremental (the agent restarted in
    // round 1 sends its spooled transmission, then runs the job again).
    let full: Vec<bool> = analytic
        .query(
            "SELECT coalesce(full_extract, false) FROM transmissor.transmissions \
             WHERE job = 'grande_up' AND state = 'committed' ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        full.len() >= 3 && full[0] && full[1..].iter().all(|f| !f),
        "committed transmissions, full or not: {full:?}"
    );
    Ok(())
}
