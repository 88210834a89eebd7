//! The municipal database: a read-only session with pinned settings, the
//! snapshot transaction, and the description of a job's columns.
//!
//! The agent never writes: every run is one `REPEATABLE READ READ ONLY`
//! transaction, and the session pins what changes COPY text output
//! (`extra_float_digits`, `DateStyle`, `IntervalStyle`, `TimeZone`,
//! `client_encoding`, `bytea_output`) so the values are the same from
//! PostgreSQL 9.6 to 18 (tested on 10 to 18; servers before 12 print floats
//! with 18 significant digits instead of the shortest exact form, which
//! reads back to the same value — ARCHITECTURE.md, section 1b).

use std::time::Duration;

use thiserror::Error;
use tokio_postgres::{AsyncMessage, Client, GenericClient, NoTls};
use transmissor_proto::redact::{PgErrorFields, RedactedDbError};

use crate::config::SourceConfig;
use crate::pipeline::spool::ColumnMeta;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("cannot connect to the source database {host}:{port}/{dbname}: {message}")]
    Connect {
        host: String,
        port: u16,
        dbname: String,
        message: String,
    },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("source database: {0}")]
    Db(String),
    #[error("{0}")]
    Column(String),
}

/// A PostgreSQL error without its data values ([`transmissor_proto::redact`]).
pub fn redact_db_error(db: &tokio_postgres::error::DbError) -> RedactedDbError {
    RedactedDbError::new(PgErrorFields {
        code: db.code().code(),
        message: db.message(),
        detail: db.detail(),
        hint: db.hint(),
        schema: db.schema(),
        table: db.table(),
        column: db.column(),
        datatype: db.datatype(),
        constraint: db.constraint(),
    })
}

/// Formats a PostgreSQL error the way an operator wants to read it:
/// severity, then SQLSTATE, condition, message, detail and hint as far as
/// [`redact_db_error`] keeps them, and the position in the query.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}", db.severity(), redact_db_error(db));
            if let Some(tokio_postgres::error::ErrorPosition::Original(p)) = db.position() {
                s.push_str(&format!(" (at character {p})"));
            }
            s
        }
        None => e.to_string(),
    }
}

impl From<tokio_postgres::Error> for SourceError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(describe_pg_error(&e))
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The connection settings of `[source]`, the password read from its file
/// or variable.
pub fn pg_config(cfg: &SourceConfig) -> Result<tokio_postgres::Config, SourceError> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&cfg.host)
        .port(cfg.port)
        .dbname(&cfg.dbname)
        .user(&cfg.user)
        .application_name("transmissor-agent")
        .connect_timeout(cfg.connect_timeout);
    if let Some(pw) = cfg.password()? {
        pg.password(pw);
    }
    Ok(pg)
}

/// Connects and pins the session.
pub async fn connect(cfg: &SourceConfig) -> Result<Client, SourceError> {
    let pg = pg_config(cfg)?;
    let (client, connection) = pg.connect(NoTls).await.map_err(|e| SourceError::Connect {
        host: cfg.host.clone(),
        port: cfg.port,
        dbname: cfg.dbname.clone(),
        message: describe_pg_error(&e),
    })?;
    tokio::spawn(async move {
        // Drive the connection ourselves: tokio-postgres would log notices
        // (`RAISE NOTICE` texts built from rows) as the server sent them.
        let mut connection = connection;
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notice(n))) => {
                    tracing::info!(notice = %redact_db_error(&n), "source database notice");
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %describe_pg_error(&e), "source connection ended");
                    break;
                }
                None => break,
            }
        }
    });
    client
        .batch_execute(&format!(
            "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
             SET TimeZone = 'UTC'; SET client_encoding = 'UTF8'; SET bytea_output = 'hex'; \
             SET statement_timeout = {}; SET lock_timeout = {}; \
             SET idle_in_transaction_session_timeout = {}",
            ms(cfg.statement_timeout),
            ms(cfg.lock_timeout),
            // A stuck agent must never hold the snapshot (and VACUUM) for long.
            ms(cfg.statement_timeout.max(Duration::from_secs(600))),
        ))
        .await?;
    Ok(client)
}

/// Describes a job's result columns and decides each target type:
/// built-in types as they are, enums as `text`, domains as their base type,
/// arrays of those likewise; anything else is refused naming the column.
pub async fn describe(
    client: &impl GenericClient,
    query: &str,
) -> Result<Vec<ColumnMeta>, SourceError> {
    let stmt = client.prepare(query).await?;
    let mut out = Vec::with_capacity(stmt.columns().len());
    for col in stmt.columns() {
        let oid = col.type_().oid();
        let typmod = col.type_modifier();
        let source_type = format_type(client, oid, typmod).await?;
        let target_type = target_type(client, oid, typmod, 0)
            .await?
            .map_err(|why| {
                SourceError::Column(format!(
                    "column {:?} has type {source_type}, {why}; cast it in the job's query (for example {}::text)",
                    col.name(),
                    col.name()
                ))
            })?;
        out.push(ColumnMeta {
            name: col.name().to_string(),
            source_type,
            target_type,
            pseudonymised: false,
        });
    }
    Ok(out)
}

/// Whether every column of a query's result can travel as COPY binary: its
/// type has a binary form (`typsend`), and the analytic server reads it back
/// as the column's target type. Arrays of enums or domains cannot: their
/// binary form names the element type by an OID only the source knows.
pub async fn binary_capable(client: &impl GenericClient, query: &str) -> Result<bool, SourceError> {
    let stmt = client.prepare(query).await?;
    for col in stmt.columns() {
        if !Box::pin(binary_type(client, col.type_().oid(), 0)).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn binary_type(
    client: &impl GenericClient,
    oid: u32,
    depth: u32,
) -> Result<bool, SourceError> {
    if depth > 8 {
        return Ok(false);
    }
    let row = client
        .query_opt(
            "SELECT t.typtype::text, t.typsend::oid <> 0, t.typbasetype, t.typelem, t.typcategory::text, \
                    coalesce(e.typtype::text, ''), coalesce(e.typnamespace = 'pg_catalog'::regnamespace, false) \
             FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem WHERE t.oid = $1::oid",
            &[&oid],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let (typtype, has_send, base, elem): (String, bool, u32, u32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let (category, elem_type, elem_catalog): (String, String, bool) =
        (row.get(4), row.get(5), row.get(6));
    if !has_send {
        return Ok(false);
    }
    if typtype == "d" {
        return Box::pin(binary_type(client, base, depth + 1)).await;
    }
    if category == "A" && elem != 0 {
        return Ok(elem_catalog
            && matches!(elem_type.as_str(), "b" | "r" | "m")
            && Box::pin(binary_type(client, elem, depth + 1)).await?);
    }
    Ok(true)
}

async fn format_type(
    client: &impl GenericClient,
    oid: u32,
    typmod: i32,
) -> Result<String, SourceError> {
    let row = client
        .query_one("SELECT format_type($1::oid, $2::int4)", &[&oid, &typmod])
        .await?;
    Ok(row.get(0))
}

/// `Ok(Err(reason))` when the type cannot be reproduced on the analytic side.
async fn target_type(
    client: &impl GenericClient,
    oid: u32,
    typmod: i32,
    depth: u32,
) -> Result<Result<String, String>, SourceError> {
    if depth > 8 {
        return Ok(Err("which nests domains or arrays too deeply".into()));
    }
    let row = client
        .query_opt(
            "SELECT t.typtype::text, n.nspname::text, t.typbasetype, t.typtypmod, t.typelem, \
                    t.typcategory::text, format_type(t.oid, $2::int4) \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1::oid",
            &[&oid, &typmod],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Err(format!("whose type oid {oid} is unknown")));
    };
    let (typtype, nsp): (String, String) = (row.get(0), row.get(1));
    let (base, base_mod, elem): (u32, i32, u32) = (row.get(2), row.get(3), row.get(4));
    let (category, formatted): (String, String) = (row.get(5), row.get(6));
    if nsp == "pg_catalog" && matches!(typtype.as_str(), "b" | "r" | "m") {
        return Ok(Ok(formatted));
    }
    match typtype.as_str() {
        "d" => Box::pin(target_type(client, base, base_mod, depth + 1)).await,
        "e" => Ok(Ok("text".into())),
        "b" if category == "A" && elem != 0 => {
            Ok(Box::pin(target_type(client, elem, typmod, depth + 1))
                .await?
                .map(|t| {
                    if t.ends_with("[]") {
                        t
                    } else {
                        format!("{t}[]")
                    }
                }))
        }
        _ => Ok(Err(format!(
            "a type of schema {nsp} that the analytic database does not have"
        ))),
    }
}
