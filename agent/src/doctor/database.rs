//! The database checks: the PEC database is reachable with the configured
//! role and password (md5 and SCRAM alike: the client speaks both), its
//! PostgreSQL version is supported, PEC's version is found, every job of
//! the plan can read what it needs (`EXPLAIN` checks privileges without
//! reading a row), and the role cannot write ([`super::write_access`]).

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::config::AgentConfig;
use crate::jobs::JobSet;
use crate::pipeline::extract;
use crate::pipeline::source::{self, describe_pg_error};

use super::finding::Finding;
use super::item::{Check, Item};
use super::write_access;

/// Oldest and newest-tested PostgreSQL (`server_version_num`).
const OLDEST: i32 = 90_600;
const NEWEST_TESTED_MAJOR: i32 = 18;

/// Runs the database checks; `jobs` are the plan's (None: unknown yet).
pub async fn check(cfg: &AgentConfig, jobs: Option<&JobSet>) -> Vec<Item> {
    let mut items = Vec::new();
    let Some(client) = connect(cfg, &mut items).await else {
        for c in [
            Check::DatabaseVersion,
            Check::DatabasePecVersion,
            Check::DatabaseRead,
            Check::DatabaseWriteAccess,
        ] {
            items.push(Item::new(
                c,
                Finding::NotChecked {
                    needs: Check::DatabaseConnect,
                },
            ));
        }
        return items;
    };
    match version(&client).await {
        Ok(f) => items.push(Item::new(Check::DatabaseVersion, f)),
        Err(e) => items.push(Item::new(Check::DatabaseVersion, db_error(&e))),
    }
    read(&client, cfg, jobs, &mut items).await;
    match write_access::check(&client).await {
        Ok(found) if found.is_empty() => items.push(Item::new(
            Check::DatabaseWriteAccess,
            Finding::CannotWrite {
                role: cfg.source.user.clone(),
            },
        )),
        Ok(found) => {
            for access in found {
                let role = cfg.source.user.clone();
                let f = if access.is_warning() {
                    Finding::MayWrite { role, access }
                } else {
                    Finding::CanWrite { role, access }
                };
                items.push(Item::new(Check::DatabaseWriteAccess, f));
            }
        }
        Err(e) => items.push(Item::new(Check::DatabaseWriteAccess, db_error(&e))),
    }
    items
}

fn db_error(e: &tokio_postgres::Error) -> Finding {
    Finding::DbError {
        error: describe_pg_error(e),
    }
}

/// Connects as the agent does, sorting a refusal into what it means.
async fn connect(cfg: &AgentConfig, items: &mut Vec<Item>) -> Option<Client> {
    let s = &cfg.source;
    let pg = match source::pg_config(s) {
        Ok(pg) => pg,
        Err(e) => {
            items.push(Item::new(
                Check::DatabaseConnect,
                Finding::DbPasswordUnreadable {
                    error: e.to_string(),
                },
            ));
            return None;
        }
    };
    match pg.connect(NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            items.push(Item::new(
                Check::DatabaseConnect,
                Finding::DbConnected {
                    host: s.host.clone(),
                    port: s.port,
                    dbname: s.dbname.clone(),
                    user: s.user.clone(),
                },
            ));
            Some(client)
        }
        Err(e) => {
            items.push(Item::new(Check::DatabaseConnect, refusal(cfg, &e)));
            None
        }
    }
}

/// What a failed connection means.
fn refusal(cfg: &AgentConfig, e: &tokio_postgres::Error) -> Finding {
    let s = &cfg.source;
    let error = describe_pg_error(e);
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::INVALID_PASSWORD => Finding::DbAuthFailed {
            user: s.user.clone(),
            error,
        },
        Some(db) if *db.code() == SqlState::INVALID_CATALOG_NAME => Finding::DbNoDatabase {
            dbname: s.dbname.clone(),
        },
        Some(db)
            if *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                && db.message().contains("pg_hba.conf") =>
        {
            Finding::DbNoHbaEntry {
                user: s.user.clone(),
                dbname: s.dbname.clone(),
                error,
            }
        }
        // A role that does not exist, or another refusal of who we are.
        Some(db) if *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            Finding::DbAuthFailed {
                user: s.user.clone(),
                error,
            }
        }
        Some(_) => Finding::DbError { error },
        // The server asked for a password and none is configured.
        None if error.contains("password missing") => Finding::DbAuthFailed {
            user: s.user.clone(),
            error,
        },
        None => Finding::DbUnreachable {
            host: s.host.clone(),
            port: s.port,
            error: chain(e),
        },
    }
}

/// An error and its causes, once each ("error connecting to server:
/// Connection refused (os error 111)").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

async fn version(client: &Client) -> Result<Finding, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, current_setting('server_version')",
            &[],
        )
        .await?;
    let (num, version): (i32, String) = (row.get(0), row.get(1));
    Ok(if num < OLDEST {
        Finding::VersionTooOld { version }
    } else if num / 10_000 > NEWEST_TESTED_MAJOR {
        Finding::VersionUntested { version }
    } else {
        Finding::VersionSupported { version }
    })
}

/// PEC's version, then each job: `EXPLAIN` (privileges) and its columns,
/// in one read-only snapshot.
async fn read(client: &Client, cfg: &AgentConfig, jobs: Option<&JobSet>, items: &mut Vec<Item>) {
    let tx = async {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let has_log: bool = client
            .query_one("SELECT to_regclass('tb_migracao') IS NOT NULL", &[])
            .await?
            .get(0);
        Ok::<_, tokio_postgres::Error>(has_log)
    };
    let has_log = match tx.await {
        Ok(h) => h,
        Err(e) => {
            items.push(Item::new(Check::DatabasePecVersion, db_error(&e)));
            return;
        }
    };
    let pec = match extract::pec_version(client, has_log).await {
        Ok(Some(v)) => {
            items.push(Item::new(
                Check::DatabasePecVersion,
                Finding::PecFound {
                    version: v.to_string(),
                },
            ));
            Some(v)
        }
        Ok(None) => {
            items.push(Item::new(Check::DatabasePecVersion, Finding::PecUnknown));
            None
        }
        Err(e) => {
            items.push(Item::new(
                Check::DatabasePecVersion,
                Finding::DbError {
                    error: e.to_string(),
                },
            ));
            None
        }
    };
    match jobs {
        Some(jobs) if !jobs.jobs.is_empty() => {
            for spec in &jobs.jobs {
                if let (Some(range), Some(v)) = (&spec.pec_version, &pec)
                    && !range.contains(v)
                {
                    // The plan runs this job on other PEC versions only.
                    continue;
                }
                let f = readable(client, &cfg.source.user, &spec.job.name, &spec.job.query).await;
                items.push(Item::new(Check::DatabaseRead, f));
            }
        }
        _ => items.push(Item::new(Check::DatabaseRead, Finding::NoJobs)),
    }
    let _ = client.batch_execute("ROLLBACK").await;
}

/// One job: its columns (prepare) and whether the role may read what it
/// reads (`EXPLAIN` runs the executor's permission checks, not the query).
async fn readable(client: &Client, user: &str, job: &str, query: &str) -> Finding {
    let query = query.trim().trim_end_matches(';').trim_end();
    let attempt = async {
        client.batch_execute("SAVEPOINT transmissor_doctor").await?;
        let columns = client.prepare(query).await?.columns().len();
        client.batch_execute(&format!("EXPLAIN {query}")).await?;
        Ok::<_, tokio_postgres::Error>(columns)
    };
    let result = attempt.await;
    let _ = client
        .batch_execute("ROLLBACK TO SAVEPOINT transmissor_doctor")
        .await;
    let e = match result {
        Ok(columns) => {
            return Finding::JobReadable {
                job: job.to_string(),
                columns,
            };
        }
        Err(e) => e,
    };
    let error = describe_pg_error(&e);
    let job = job.to_string();
    match e
        .as_db_error()
        .map(|d| (d.code().clone(), d.message().to_string()))
    {
        Some((code, message)) if code == SqlState::INSUFFICIENT_PRIVILEGE => Finding::ReadDenied {
            job,
            object: denied_object(&message),
            user: transmissor_proto::names::quote_ident(user),
            error,
        },
        Some((code, _))
            if code == SqlState::UNDEFINED_TABLE
                || code == SqlState::UNDEFINED_COLUMN
                || code == SqlState::INVALID_SCHEMA_NAME
                || code == SqlState::UNDEFINED_FUNCTION =>
        {
            Finding::TableMissing { job, error }
        }
        _ => Finding::QueryFailed { job, error },
    }
}

/// The object of "permission denied for table x" (PostgreSQL 11+ says
/// table, view, sequence or schema; 10 says relation), as a GRANT target:
/// `"x"`, or `SCHEMA "pec"`. Names only: no data is in these messages.
/// The name is the server's bare name, which anyone who may create a
/// table chooses: it is quoted as one identifier, so the GRANT the fix
/// line prints for an administrator cannot carry other statements.
fn denied_object(message: &str) -> Option<String> {
    use transmissor_proto::names::quote_ident;
    let rest = message.strip_prefix("permission denied for ")?;
    let (kind, name) = rest.split_once(' ')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    Some(match kind {
        "schema" => format!("SCHEMA {}", quote_ident(name)),
        "materialized" => quote_ident(name.strip_prefix("view ")?),
        "table" | "relation" | "view" | "sequence" => quote_ident(name),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::denied_object;

    #[test]
    fn denied_objects() {
        assert_eq!(
            denied_object("permission denied for table tb_cidadao").as_deref(),
            Some("\"tb_cidadao\"")
        );
        assert_eq!(
            denied_object("permission denied for relation tb_cidadao").as_deref(),
            Some("\"tb_cidadao\"")
        );
        assert_eq!(
            denied_object("permission denied for schema pec").as_deref(),
            Some("SCHEMA \"pec\"")
        );
        // A table named to close the GRANT and append a statement.
        assert_eq!(
            denied_object("permission denied for table x TO PUBLIC; DROP TABLE y; --\"").as_deref(),
            Some("\"x TO PUBLIC; DROP TABLE y; --\"\"\"")
        );
        assert_eq!(denied_object("permission denied for function f"), None);
        assert_eq!(denied_object("something else"), None);
    }
}
