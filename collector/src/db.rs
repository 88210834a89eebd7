//! The analytic database: connection pool with pinned session settings,
//! embedded migrations of the control schema, and the schemas loads use.
//! [`follow`] keeps in-memory copies of small tables current.

pub mod follow;

use std::str::FromStr;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::{ConfigError, DatabaseConfig};
use crate::load::PARTS_SCHEMA;

/// The analytic database's connection pool.
pub type Pool = PgPool;

/// Migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database url: {0}")]
    Url(String),
    #[error("cannot connect to the analytic database: {0}")]
    Connect(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Session settings that make COPY text input parse the way the agent's
/// output was produced, whatever the server's defaults.
const SESSION: [(&str, &str); 5] = [
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("client_encoding", "UTF8"),
    ("extra_float_digits", "3"),
];

pub fn connect_options(cfg: &DatabaseConfig) -> Result<PgConnectOptions, DbError> {
    let mut opts = PgConnectOptions::from_str(&cfg.url).map_err(|e| DbError::Url(e.to_string()))?;
    if let Some(pw) = cfg.password()? {
        opts = opts.password(&pw);
    }
    Ok(opts
        .options(SESSION)
        .application_name("transmissor-collector"))
}

pub async fn connect(cfg: &DatabaseConfig) -> Result<PgPool, DbError> {
    connect_sized(cfg, cfg.max_connections).await
}

/// Connections for the per-call identity check: a pool of their own, so a
/// burst of loads waiting on locks never delays authentication (and with it
/// every heartbeat).
pub const AUTH_POOL_CONNECTIONS: u32 = 4;

pub async fn connect_sized(cfg: &DatabaseConfig, max: u32) -> Result<PgPool, DbError> {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(cfg.acquire_timeout)
        .connect_with(connect_options(cfg)?)
        .await
        .map_err(DbError::Connect)
}

/// Applies pending migrations and creates the schemas loads write to.
pub async fn migrate(pool: &PgPool, target_schema: &str) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    ensure_schemas(pool, target_schema).await
}

pub async fn ensure_schemas(pool: &PgPool, target_schema: &str) -> Result<(), DbError> {
    for s in [target_schema, PARTS_SCHEMA] {
        sqlx::query(audited_sql!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            transmissor_proto::names::quote_ident(s)
        ))
        .execute(pool)
        .await?;
    }
    Ok(())
}
