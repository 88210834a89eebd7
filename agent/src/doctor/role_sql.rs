//! The read-only role the agent should log in as: `SELECT` on the tables
//! the plan's queries read, nothing else. Printed for an administrator to
//! run, or run once through an administrator's connection given
//! interactively (that password is never stored; the agent's own comes
//! from its password file).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{Query, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use thiserror::Error;
use tokio_postgres::NoTls;

use crate::config::AgentConfig;
use crate::jobs::JobSet;
use crate::pipeline::source::{self, describe_pg_error};

use super::sql_name::{self, Ident, NameError, TableName};
use super::write_access::{read_only_grants_sql, read_only_role_sql, role_login_sql};

#[derive(Debug, Error)]
pub enum RoleSqlError {
    #[error(
        "job {job}: its SQL cannot be read to find its tables ({message}); name them with --table"
    )]
    Parse { job: String, message: String },
    #[error("no jobs to read the tables from (no plan accepted yet): name them with --table")]
    NoTables,
    #[error("{0}")]
    Source(#[from] crate::pipeline::source::SourceError),
    #[error("as {admin}: {message}")]
    Admin { admin: String, message: String },
    #[error("job {job}: {source}")]
    TableName { job: String, source: NameError },
    #[error("[source] user or dbname: {0}")]
    Name(#[source] NameError),
}

/// Tables the agent reads besides the plan's: PEC's migration log, where
/// PEC's version comes from (granted only where it exists).
pub const AGENT_TABLES: [&str; 1] = ["tb_migracao"];

/// Collects table names and the names of the query's own CTEs.
#[derive(Default)]
struct Tables {
    relations: BTreeSet<TableName>,
    ctes: BTreeSet<String>,
    refused: Option<NameError>,
}

impl Visitor for Tables {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let name = &cte.alias.name;
                self.ctes.insert(match name.quote_style {
                    Some(_) => name.value.clone(),
                    None => name.value.to_ascii_lowercase(),
                });
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &sqlparser::ast::ObjectName) -> ControlFlow<()> {
        match TableName::from_object_name(relation) {
            Ok(t) => {
                self.relations.insert(t);
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.refused = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

/// The tables `jobs` read, as PostgreSQL resolves their names in the SQL
/// (`tb_x`, `pec.tb_y`; unquoted names folded), sorted, CTE names left
/// out, and [`AGENT_TABLES`].
pub fn tables_of(jobs: &JobSet) -> Result<Vec<TableName>, RoleSqlError> {
    let mut all = BTreeSet::new();
    for spec in &jobs.jobs {
        let statements =
            Parser::parse_sql(&PostgreSqlDialect {}, &spec.job.query).map_err(|e| {
                RoleSqlError::Parse {
                    job: spec.job.name.clone(),
                    message: e.to_string(),
                }
            })?;
        let mut v = Tables::default();
        let _ = statements.visit(&mut v);
        if let Some(source) = v.refused {
            return Err(RoleSqlError::TableName {
                job: spec.job.name.clone(),
                source,
            });
        }
        all.extend(
            v.relations
                .into_iter()
                .filter(|r| r.schema().is_some() || !v.ctes.contains(r.relation().as_str())),
        );
    }
    if !all.is_empty() {
        for t in AGENT_TABLES {
            all.insert(TableName::bare(t).map_err(RoleSqlError::Name)?);
        }
    }
    Ok(all.into_iter().collect())
}

/// The role and database of `cfg`'s `[source]`, as names to quote.
fn role_and_database(cfg: &AgentConfig) -> Result<(Ident, Ident), RoleSqlError> {
    Ok((
        Ident::new(&cfg.source.user).map_err(RoleSqlError::Name)?,
        Ident::new(&cfg.source.dbname).map_err(RoleSqlError::Name)?,
    ))
}

/// The SQL for `cfg`'s role, database and `tables` (the password a
/// placeholder).
pub fn print(cfg: &AgentConfig, tables: &[TableName]) -> Result<String, RoleSqlError> {
    let (role, database) = role_and_database(cfg)?;
    Ok(read_only_role_sql(&role, &database, tables))
}

/// Runs it through an administrator's connection to the same server and
/// database, in one transaction: the role is created (or, when it exists,
/// altered) with the password of the agent's password file.
pub async fn apply(
    cfg: &AgentConfig,
    tables: &[TableName],
    admin: &str,
    admin_password: &str,
) -> Result<(), RoleSqlError> {
    let failed = |e: tokio_postgres::Error| RoleSqlError::Admin {
        admin: admin.to_string(),
        message: describe_pg_error(&e),
    };
    let (role, database) = role_and_database(cfg)?;
    let password = cfg.source.password().map_err(source::SourceError::from)?;
    let password_sql = match password.as_deref() {
        Some(p) => sql_name::literal(p).map_err(RoleSqlError::Name)?,
        None => "NULL".to_string(),
    };
    let mut pg = source::pg_config(&cfg.source)?;
    pg.user(admin).password(admin_password);
    let (mut client, connection) = pg.connect(NoTls).await.map_err(failed)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)",
            &[&role.as_str()],
        )
        .await
        .map_err(failed)?
        .get(0);
    // The agent's own tables only where this database has them.
    let mut tables = tables.to_vec();
    for t in AGENT_TABLES {
        let present: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t])
            .await
            .map_err(failed)?
            .get(0);
        if !present {
            let t = TableName::bare(t).map_err(RoleSqlError::Name)?;
            tables.retain(|x| *x != t);
        }
    }
    let sql = format!(
        "{}{}",
        role_login_sql(&role, &password_sql, exists),
        read_only_grants_sql(&role, &database, &tables)
    );
    let tx = client.transaction().await.map_err(failed)?;
    tx.batch_execute(&sql).await.map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JobConfig, Mode};

    fn jobs(queries: &[&str]) -> JobSet {
        let mut set = JobSet::empty();
        for (i, q) in queries.iter().enumerate() {
            set.jobs.push(crate::jobs::JobSpec {
                job: JobConfig::new(&format!("j{i}"), Mode::Snapshot, &format!("t{i}"), q),
                timing: None,
                pec_version: None,
                reconcile: None,
                privacy: None,
            });
        }
        set
    }

    #[test]
    fn tables_of_queries() {
        let t = tables_of(&jobs(&[
            "SELECT a.co_seq, c.no_x FROM tb_atend a JOIN pec.tb_cidadao c ON c.id = a.id",
            "WITH recent AS (SELECT * FROM tb_fat WHERE dt > now() - interval '1 day') \
             SELECT * FROM recent WHERE EXISTS (SELECT 1 FROM tb_dim d WHERE d.id = recent.id)",
        ]))
        .unwrap();
        assert_eq!(
            t.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                r#""pec"."tb_cidadao""#,
                r#""tb_atend""#,
                r#""tb_dim""#,
                r#""tb_fat""#,
                r#""tb_migracao""#
            ]
        );
        assert!(matches!(
            tables_of(&jobs(&["SELEC nonsense"])),
            Err(RoleSqlError::Parse { .. })
        ));
    }
}
