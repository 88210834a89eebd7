//! Source versions: the agent against real PostgreSQL 10, 12, 14, 16, 17 and
//! 18 sources (municipal PEC servers run 9.6 to 17), the analytic side on the
//! system's PostgreSQL; and once the analytic side on 17. One test per
//! version, so they run in parallel and a failure names the version.
//!
//! The servers are the embedded distributions that `cargo xtask test`
//! installs (`transmissor_tests::pg::PgServer::Embedded`); without them a
//! test fails saying so.
//!
//! Each test fills the fidelity table (`transmissor_tests::fidelity`: every
//! tricky type and special value, plus a few thousand generated rows) and a
//! tiny synthetic PEC database, then runs the agent once with
//! `copy_format = "binary"`, three jobs in one snapshot: `fidelity` (all
//! columns; its array of enums has no portable binary form, so it travels as
//! COPY text), `fidelity_bin` (the other columns, as COPY binary) and the
//! nominal list of hypertensive citizens (a multi-table join, `append`, as
//! COPY binary). The
//! agent authenticates with its password: SCRAM-SHA-256, or MD5 (the default
//! before PostgreSQL 14, still common after upgrades) on 12 and 16.
//!
//! Values are compared, not text: with `extra_float_digits = 3` servers
//! before 12 print floats with 18 (double precision) or 9 (real) significant
//! digits where later ones print the shortest exact form
//! (`4.94065645841246544e-324` against `5e-324`: the same value). So the
//! source's COPY text dump is loaded into a table of the target's column
//! types on the analytic server, and the analytic server's own ordered dumps
//! of that table and of the target must be equal byte for byte.

use anyhow::{Context, Result, bail};
use transmissor_tests::fidelity::{self, BINARY_COLUMNS, SPECIAL_ROWS};
use transmissor_tests::pec::{HYPERTENSION_LIST_SQL, Scale};
use transmissor_tests::pg::{ClusterOptions, PgServer, server_version_num};
use transmissor_tests::stack::{Job, READER_ROLE, Stack, StackOptions, copy_dump, copy_load};

const MUNI: (&str, &str) = ("4106902", "Curitiba");

/// Generated rows after the special ones: a few batches of 64 KiB, quickly.
const ROWS: u64 = 3_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Scram,
    Md5,
}

impl Auth {
    /// `password_encryption` and the `pg_hba.conf` method.
    fn method(self) -> &'static str {
        match self {
            Self::Scram => "scram-sha-256",
            Self::Md5 => "md5",
        }
    }

    /// How `pg_authid.rolpassword` starts when stored this way.
    fn stored_prefix(self) -> &'static str {
        match self {
            Self::Scram => "SCRAM-SHA-256$",
            Self::Md5 => "md5",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_postgresql_10() -> Result<()> {
    across(PgServer::Embedded(10), PgServer::System, Auth::Scram).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_postgresql_12() -> Result<()> {
    across(PgServer::Embedded(12), PgServer::System, Auth::Md5).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_postgresql_14() -> Result<()> {
    across(PgServer::Embedded(14), PgServer::System, Auth::Scram).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_postgresql_16() -> Result<()> {
    across(PgServer::Embedded(16), PgServer::System, Auth::Md5).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_postgresql_17() -> Result<()> {
    across(PgServer::Embedded(17), PgServer::System, Auth::Scram).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_postgresql_18() -> Result<()> {
    across(PgServer::Embedded(18), PgServer::System, Auth::Scram).await
}

/// The collector loads into PostgreSQL 17 (the source on the system's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytic_postgresql_17() -> Result<()> {
    across(PgServer::System, PgServer::Embedded(17), Auth::Scram).await
}

/// The major a server should report, when the test pins one.
fn expected_major(server: &PgServer) -> Option<i32> {
    match server {
        PgServer::Embedded(m) => Some(*m as i32),
        _ => None,
    }
}

async fn across(source: PgServer, analytic: PgServer, auth: Auth) -> Result<()> {
    // A missing distribution fails here, saying how to install it.
    source.bin_dir()?;
    analytic.bin_dir()?;
    let method = auth.method();
    let mut stack = Stack::with_options(
        &[MUNI],
        StackOptions {
            cluster: ClusterOptions {
                server: analytic.clone(),
                ..Default::default()
            },
            source_cluster: Some(ClusterOptions {
                server: source.clone(),
                extra: vec![("password_encryption".into(), method.into())],
                hba_first: vec![format!("host all {READER_ROLE} 127.0.0.1/32 {method}")],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("stack with the source on {source}, the analytic on {analytic}"))?;
    let m = stack.munis[0].clone();
    let src = stack.source.connect(&m.db).await?;
    let analytic_client = stack.analytic_client().await?;
    let source_version = server_version_num(&src).await?;
    let analytic_version = server_version_num(&analytic_client).await?;
    for (server, version) in [(&source, source_version), (&analytic, analytic_version)] {
        if let Some(major) = expected_major(server)
            && version / 10_000 != major
        {
            bail!("{server} reports server_version_num {version}");
        }
    }
    let label = format!("source {source_version}, analytic {analytic_version}");

    // The agent's role really authenticates with its password, stored as asked.
    let stored: String = stack
        .source
        .connect("postgres")
        .await?
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&READER_ROLE],
        )
        .await?
        .get(0);
    assert!(
        stored.starts_with(auth.stored_prefix()),
        "{label}: the reader's password is stored as {}..., not {method}",
        &stored[..stored.len().min(14)]
    );
    let without_password = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={READER_ROLE} dbname={}",
            stack.source.port, m.db
        ),
        tokio_postgres::NoTls,
    )
    .await;
    match without_password {
        Ok(_) => bail!("{label}: the reader connected without its password"),
        // tokio-postgres: "invalid configuration", caused by "password missing".
        Err(e) => assert!(
            format!("{e:?}").contains("password missing"),
            "{label}: the reader without its password: {e:?}"
        ),
    }

    stack
        .load_pec(&m, 7, &Scale::tiny())
        .await
        .with_context(|| format!("{label}: PEC data"))?;
    src.batch_execute(&fidelity::setup_sql(source_version, ROWS))
        .await
        .with_context(|| format!("{label}: fidelity data"))?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector_in_process().await?;

    let jobs = [
        Job::new(
            "fidelidade",
            "snapshot",
            "fidelity",
            "SELECT * FROM fidelity",
        ),
        Job::new(
            "fidelidade_binaria",
            "snapshot",
            "fidelity_bin",
            &format!("SELECT {BINARY_COLUMNS} FROM fidelity"),
        ),
        Job::new(
            "hipertensos",
            "append",
            "lista_hipertensos",
            HYPERTENSION_LIST_SQL,
        ),
    ];
    let cfg = stack.agent_config(&m, &jobs, "[spool]\nbatch_raw_bytes = \"64KiB\"\n")?;
    let toml = std::fs::read_to_string(&cfg)?.replacen(
        "[source]\n",
        "[source]\ncopy_format = \"binary\"\n",
        1,
    );
    std::fs::write(&cfg, toml)?;

    // `transmissor-agent check`'s path: every job described.
    let agent_cfg = transmissor_agent::config::AgentConfig::load(&cfg)?;
    let (pec, described) = transmissor_agent::pipeline::extract::describe_jobs(
        &agent_cfg,
        &transmissor_agent::jobs::JobSet::local(&agent_cfg),
    )
    .await
    .with_context(|| format!("{label}: describing the jobs"))?;
    // The PEC version: the newest db/v<version>/ of tb_migracao, compared
    // as numbers (5.0.14 > 5.0.8), on every server version.
    assert_eq!(
        pec.map(|v| v.to_string()).as_deref(),
        Some("5.5.28"),
        "{label}"
    );
    assert_eq!(
        described,
        vec![
            ("fidelidade".to_string(), Ok(33)),
            ("fidelidade_binaria".to_string(), Ok(32)),
            ("hipertensos".to_string(), Ok(NOMINAL_LIST_COLUMNS)),
        ],
        "{label}"
    );

    let report = stack.run_agent_in_process(&cfg).await?;
    assert!(report.all_committed(), "{label}: {report}");

    // The target's columns as the agent described them from this source.
    let types: Vec<(String, String)> = analytic_client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a WHERE a.attrelid = 'analytic.fidelity'::regclass \
             AND a.attnum > 0 AND NOT a.attisdropped AND a.attname NOT LIKE '\\_%' ORDER BY a.attnum",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(String, String)> = TARGET_TYPES
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect();
    assert_eq!(types, expected, "{label}: target column types");

    let nominal_list_rows: i64 = src
        .query_one(
            &format!("SELECT count(*) FROM ({HYPERTENSION_LIST_SQL}) l"),
            &[],
        )
        .await?
        .get(0);
    assert!(nominal_list_rows > 0, "{label}: the nominal list is empty");
    let fidelity_rows = (ROWS + SPECIAL_ROWS) as i64;
    for (job, target, source, format, rows, min_batches) in [
        (
            "fidelidade",
            "fidelity",
            "fidelity".to_string(),
            "text",
            fidelity_rows,
            6,
        ),
        (
            "fidelidade_binaria",
            "fidelity_bin",
            "fidelity".to_string(),
            "binary",
            fidelity_rows,
            6,
        ),
        (
            "hipertensos",
            "lista_hipertensos",
            format!("({HYPERTENSION_LIST_SQL}) l"),
            "binary",
            nominal_list_rows,
            1,
        ),
    ] {
        let (batches, sent, used, version): (i32, i64, String, i32) = analytic_client
            .query_one(
                "SELECT batches, rows, copy_format, source_server_version \
                 FROM transmissor.transmissions WHERE job = $1",
                &[&job],
            )
            .await
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))?;
        assert_eq!(used, format, "{label}: {job}: COPY format");
        assert_eq!(sent, rows, "{label}: {job}: rows");
        assert_eq!(version, source_version, "{label}: {job}: source version");
        assert!(
            batches >= min_batches,
            "{label}: {job}: expected {min_batches} batches or more, got {batches}"
        );
        compare_values(&src, &analytic_client, m.ibge.as_str(), &source, target)
            .await
            .with_context(|| format!("{label}: {job}"))?;
    }
    stack.stop_collector().await?;
    Ok(())
}

/// The source's rows, read by the analytic server into a table of the
/// target's column types, against the target's rows: the analytic server's
/// ordered COPY text dumps of both must be equal. `source` is a relation on
/// the source (a table, or a parenthesized query with an alias); rows are
/// ordered by the target's first column, a key in both.
async fn compare_values(
    src: &tokio_postgres::Client,
    analytic: &tokio_postgres::Client,
    ibge: &str,
    source: &str,
    target: &str,
) -> Result<()> {
    let columns: Vec<String> = analytic
        .query(
            "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = $1::text::regclass \
             AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_%' ORDER BY attnum",
            &[&format!("analytic.{target}")],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (list, key) = (columns.join(", "), &columns[0]);
    let source_dump =
        copy_dump(src, &format!("SELECT {list} FROM {source} ORDER BY {key}")).await?;
    let expected = format!("expected_{target}");
    analytic
        .batch_execute(&format!(
            "CREATE TEMP TABLE {expected} AS SELECT {list} FROM analytic.{target} WITH NO DATA"
        ))
        .await?;
    let loaded = copy_load(analytic, &expected, &source_dump).await?;
    let expected_dump = copy_dump(
        analytic,
        &format!("SELECT {list} FROM {expected} ORDER BY {key}"),
    )
    .await?;
    let target_dump = copy_dump(
        analytic,
        &format!("SELECT {list} FROM analytic.{target} WHERE _ibge = '{ibge}' ORDER BY {key}"),
    )
    .await?;
    if loaded == 0 {
        bail!("the source's dump is empty");
    }
    if expected_dump != target_dump {
        let e = String::from_utf8_lossy(&expected_dump);
        let t = String::from_utf8_lossy(&target_dump);
        for (a, b) in e.lines().zip(t.lines()) {
            if a != b {
                bail!("first differing row:\n  source: {a}\n  target: {b}");
            }
        }
        bail!(
            "dumps differ in length ({} source bytes, {} target bytes)",
            expected_dump.len(),
            target_dump.len()
        );
    }
    Ok(())
}

/// Columns of the nominal list of hypertensive citizens.
const NOMINAL_LIST_COLUMNS: usize = 26;

/// What the agent makes of the fidelity table's columns, whatever the source
/// version: built-in types as they are, enums as text, domains as their base.
const TARGET_TYPES: &[(&str, &str)] = &[
    ("id", "bigint"),
    ("c_smallint", "smallint"),
    ("c_int", "integer"),
    ("c_bigint", "bigint"),
    ("c_numeric", "numeric"),
    ("c_numeric_p", "numeric(40,20)"),
    ("c_real", "real"),
    ("c_double", "double precision"),
    ("c_text", "text"),
    ("c_varchar", "character varying(50)"),
    ("c_char", "character(10)"),
    ("c_bytea", "bytea"),
    ("c_bool", "boolean"),
    ("c_date", "date"),
    ("c_ts", "timestamp without time zone"),
    ("c_tstz", "timestamp with time zone"),
    ("c_ts3", "timestamp(3) without time zone"),
    ("c_time", "time without time zone"),
    ("c_timetz", "time with time zone"),
    ("c_interval", "interval"),
    ("c_uuid", "uuid"),
    ("c_json", "json"),
    ("c_jsonb", "jsonb"),
    ("c_int_arr", "integer[]"),
    ("c_text_arr", "text[]"),
    ("c_int_arr2", "integer[]"),
    ("c_humor", "text"),
    ("c_humor_arr", "text[]"),
    ("c_posint", "integer"),
    ("c_curto", "character varying(20)"),
    ("c_inet", "inet"),
    ("c_bits", "bit varying(16)"),
    ("c_range", "int4range"),
];
