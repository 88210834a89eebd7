//! Errors that quote a value, provoked on a real PostgreSQL server speaking
//! English, Spanish, French and German, pass through the redaction the agent
//! (`source::describe_pg_error`) and the collector (`pg_error`, and
//! `CollectorError`'s text) use: the value appears nowhere in what they
//! print, the SQLSTATE always does. The servers' own messages are checked to
//! be translated and to quote the value, so the test proves both points.
//!
//! Needs the OS locales `es_ES.UTF-8`, `fr_FR.UTF-8`, `de_DE.UTF-8`
//! (`cargo xtask test` generates them); fails, naming them, without.

use sqlx::Connection;
use transmissor_collector::error::CollectorError;
use transmissor_tests::locales::{MESSAGE_LOCALES, missing};
use transmissor_tests::pg::Cluster;

struct Case {
    what: &'static str,
    sql: &'static str,
    code: &'static str,
    /// The value the error quotes.
    secret: &'static str,
    /// Text of the English message (or detail) that a translation replaces.
    english: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "invalid input syntax for integer",
        sql: "SELECT 'Joao7x9Secret'::int",
        code: "22P02",
        secret: "Joao7x9Secret",
        english: "invalid input syntax",
    },
    Case {
        what: "integer out of range",
        sql: "SELECT '98765432109876543'::int",
        code: "22003",
        secret: "98765432109876543",
        english: "is out of range for type",
    },
    Case {
        what: "date out of range",
        sql: "SELECT '5874898-01-01'::date",
        code: "22008",
        secret: "5874898",
        english: "date out of range",
    },
    Case {
        what: "to_date invalid value for DD",
        sql: "SELECT to_date('Qz', 'DD')",
        code: "22007",
        secret: "Qz",
        english: "invalid value",
    },
    Case {
        what: "to_date invalid value for Month",
        sql: "SELECT to_date('Joao7x9Secret', 'Month')",
        code: "22007",
        secret: "Joao7x9Secret",
        english: "invalid value",
    },
    Case {
        what: "JSON token is invalid",
        sql: "SELECT 'Joao7x9Secret'::json",
        code: "22P02",
        secret: "Joao7x9Secret",
        english: "is invalid",
    },
    Case {
        what: "unique violation detail",
        sql: "INSERT INTO pessoa VALUES ('12345678901')",
        code: "23505",
        secret: "12345678901",
        english: "already exists",
    },
];

/// Every text the server sent, as one string (to check what it quoted).
fn raw_texts(db: &tokio_postgres::error::DbError) -> String {
    [Some(db.message()), db.detail(), db.hint(), db.where_()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" | ")
}

#[tokio::test]
async fn quoted_values_are_redacted_in_every_language() -> anyhow::Result<()> {
    let lacking = missing();
    assert!(
        lacking.is_empty(),
        "the OS locales {lacking:?} are missing, so the server cannot speak those languages; \
         `cargo xtask test` generates them (as root: add them to /etc/locale.gen and run locale-gen)"
    );
    let cluster = Cluster::start()?;
    let setup = cluster.connect("postgres").await?;
    setup
        .batch_execute(
            "CREATE TABLE pessoa (nu_cpf text UNIQUE); INSERT INTO pessoa VALUES ('12345678901')",
        )
        .await?;

    for &lang in ["C"].iter().chain(MESSAGE_LOCALES) {
        let client = cluster.connect("postgres").await?;
        client
            .batch_execute(&format!("SET lc_messages = '{lang}'"))
            .await?;
        let mut sqlx_conn = sqlx::PgConnection::connect(&cluster.url("postgres")).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET lc_messages = '{lang}'")))
            .execute(&mut sqlx_conn)
            .await?;

        for case in CASES {
            let label = format!("{} [{lang}]", case.what);

            // The agent's path: tokio-postgres, `describe_pg_error`.
            let e = client.batch_execute(case.sql).await.unwrap_err();
            let db = e.as_db_error().expect("a server error");
            assert_eq!(db.code().code(), case.code, "{label}");
            let raw = raw_texts(db);
            assert!(
                raw.contains(case.secret),
                "{label}: the server did not quote the value: {raw}"
            );
            if lang == "C" {
                assert!(raw.contains(case.english), "{label}: {raw}");
            } else {
                assert!(
                    !raw.contains(case.english),
                    "{label}: the server answered in English, not {lang}: {raw}"
                );
            }
            let agent = transmissor_agent::pipeline::source::describe_pg_error(&e);
            assert!(
                !agent.contains(case.secret),
                "{label}: agent leaks: {agent}"
            );
            assert!(agent.contains(case.code), "{label}: agent: {agent}");

            // The collector's path: sqlx, `pg_error` and `CollectorError`.
            let e = sqlx::raw_sql(sqlx::AssertSqlSafe(case.sql))
                .execute(&mut sqlx_conn)
                .await
                .unwrap_err();
            let sqlx::Error::Database(db) = &e else {
                panic!("{label}: {e}")
            };
            let redacted = transmissor_collector::pg_error::redact(db.as_ref());
            assert_eq!(redacted.code, case.code, "{label}");
            assert!(redacted.withheld(), "{label}: {redacted}");
            let status = CollectorError::from(e).to_string();
            for text in [redacted.to_string(), status] {
                assert!(
                    !text.contains(case.secret),
                    "{label}: collector leaks: {text}"
                );
                assert!(text.contains(case.code), "{label}: collector: {text}");
            }
        }
    }
    Ok(())
}

/// Classes that never quote data keep the server's words (in its language).
#[tokio::test]
async fn safe_classes_keep_the_servers_words() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let client = cluster.connect("postgres").await?;
    let e = client
        .batch_execute("SELECT * FROM tabela_que_nao_existe")
        .await
        .unwrap_err();
    let agent = transmissor_agent::pipeline::source::describe_pg_error(&e);
    assert!(
        agent.contains("42P01 undefined_table: relation \"tabela_que_nao_existe\" does not exist"),
        "{agent}"
    );
    Ok(())
}
