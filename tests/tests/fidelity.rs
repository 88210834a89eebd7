//! Fidelity: every tricky value survives agent → gRPC → collector → analytic
//! byte for byte (compared as ordered COPY text dumps of source and target),
//! in both COPY formats: text (the job with an array of enums, which has no
//! portable binary form) and binary (the same columns without it).

use transmissor_tests::fidelity::{self, BINARY_COLUMNS, COLUMNS, SPECIAL_ROWS};
use transmissor_tests::pg::server_version_num;
use transmissor_tests::stack::{Job, Stack, copy_dump};

const MUNI: (&str, &str) = ("3550308", "São Paulo");

/// Generated rows, after the special ones: enough for many batches.
const ROWS: u64 = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_survives_byte_for_byte() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[MUNI]).await?;
    let m = stack.munis[0].clone();
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(&fidelity::setup_sql(server_version_num(&src).await?, ROWS))
        .await?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector_in_process().await?;

    // The same agent runs twice: in the default COPY text, then with
    // `copy_format = "binary"` on the columns that allow it.
    let text_job = Job::new(
        "fidelidade",
        "snapshot",
        "fidelity",
        "SELECT * FROM fidelity",
    );
    let binary_job = Job::new(
        "fidelidade_binaria",
        "snapshot",
        "fidelity_bin",
        &format!("SELECT {BINARY_COLUMNS} FROM fidelity"),
    );
    for (job, format) in [(text_job, "text"), (binary_job, "binary")] {
        let cfg = stack.agent_config(&m, &[job], "[spool]\nbatch_raw_bytes = \"1MiB\"\n")?;
        let toml = std::fs::read_to_string(&cfg)?.replacen(
            "[source]\n",
            &format!("[source]\ncopy_format = \"{format}\"\n"),
            1,
        );
        std::fs::write(&cfg, toml)?;
        let report = stack.run_agent_in_process(&cfg).await?;
        assert!(report.all_committed(), "{report}");
    }

    let analytic = stack.analytic_client().await?;
    // Enum and domain columns arrive as text / their base type.
    let types: Vec<(String, String)> = analytic
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'analytic' AND table_name = 'fidelity' AND column_name IN ('c_humor', 'c_humor_arr', 'c_posint', 'c_curto') \
             ORDER BY column_name",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        types,
        vec![
            ("c_curto".into(), "character varying".into()),
            ("c_humor".into(), "text".into()),
            ("c_humor_arr".into(), "ARRAY".into()),
            ("c_posint".into(), "integer".into()),
        ]
    );

    for (job, table, columns, format) in [
        ("fidelidade", "fidelity", COLUMNS, "text"),
        (
            "fidelidade_binaria",
            "fidelity_bin",
            BINARY_COLUMNS,
            "binary",
        ),
    ] {
        let source_dump =
            copy_dump(&src, &format!("SELECT {columns} FROM fidelity ORDER BY id")).await?;
        let target_dump = copy_dump(
            &analytic,
            &format!(
                "SELECT {columns} FROM analytic.{table} WHERE _ibge = '{}' ORDER BY id",
                m.ibge
            ),
        )
        .await?;
        assert_eq!(
            source_dump.len(),
            target_dump.len(),
            "{job}: dump sizes differ"
        );
        if source_dump != target_dump {
            let s = String::from_utf8_lossy(&source_dump);
            let t = String::from_utf8_lossy(&target_dump);
            for (a, b) in s.lines().zip(t.lines()) {
                assert_eq!(a, b, "{job}: first differing row");
            }
            panic!("{job}: dumps differ");
        }
        let rows: i64 = analytic
            .query_one(&format!("SELECT count(*) FROM analytic.{table}"), &[])
            .await?
            .get(0);
        assert_eq!(rows, (ROWS + SPECIAL_ROWS) as i64, "{job}");
        let (batches, used): (i32, String) = analytic
            .query_one(
                "SELECT batches, copy_format FROM transmissor.transmissions WHERE job = $1",
                &[&job],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))?;
        assert!(batches > 20, "{job}: expected many batches, got {batches}");
        assert_eq!(used, format, "{job}: COPY format");
    }
    stack.stop_collector().await?;
    Ok(())
}

/// A type the analytic side cannot reproduce fails with the column named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_type_fails_naming_the_column() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[MUNI]).await?;
    let m = stack.munis[0].clone();
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(
        "CREATE TYPE endereco AS (rua text, numero int); \
         CREATE TABLE pessoas (id int, casa endereco); INSERT INTO pessoas VALUES (1, ROW('Rua A', 10));",
    )
    .await?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector_in_process().await?;
    let cfg = stack.agent_config(
        &m,
        &[
            Job::new("pessoas", "snapshot", "pessoas", "SELECT * FROM pessoas"),
            Job::new(
                "pessoas_texto",
                "snapshot",
                "pessoas_texto",
                "SELECT id, casa::text AS casa FROM pessoas",
            ),
        ],
        "",
    )?;
    let report = stack.run_agent_in_process(&cfg).await?;
    let text = report.to_string();
    assert!(
        text.contains("pessoas (run") && text.contains("FAILED"),
        "{text}"
    );
    assert!(
        text.contains("\"casa\"") && text.contains("endereco"),
        "{text}"
    );
    assert!(
        text.contains("pessoas_texto (run") && text.contains("committed"),
        "{text}"
    );
    let analytic = stack.analytic_client().await?;
    let err: String = analytic
        .query_one(
            "SELECT error FROM transmissor.transmissions WHERE job = 'pessoas'",
            &[],
        )
        .await?
        .get(0);
    assert!(err.contains("casa") && err.contains("endereco"), "{err}");
    stack.stop_collector().await?;
    Ok(())
}
