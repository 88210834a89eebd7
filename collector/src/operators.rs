//! People who use the dashboard and the API: operators with a role, their
//! Argon2id password hashes, and their sessions.
//!
//! | module       | responsibility                                         |
//! |--------------|--------------------------------------------------------|
//! | [`role`]     | `viewer` < `operator` < `admin`, and what each may do  |
//! | [`password`] | Argon2id hashing and verification (PHC strings)        |
//! | [`session`]  | login, session lookup (idle and absolute expiry), logout |
//! | [`throttle`] | token buckets per source address and per name, bounded  |
//! | [`hasher`]   | Argon2 on a small pool of threads with a bounded queue  |
//! | [`guard`]    | throttle then pool in front of a login; login metrics   |
//!
//! Operators are managed with `transmissor-collector operator add / list /
//! disable` (audited with the OS user, like every CLI action); actions
//! taken over HTTP are audited as `operator:<name>`.

pub mod guard;
pub mod hasher;
pub mod password;
pub mod role;
pub mod session;
pub mod throttle;

use sqlx::PgPool;
use thiserror::Error;

pub use role::Role;

use crate::audit;

#[derive(Debug, Error)]
pub enum OperatorError {
    #[error(
        "operator name {0:?} is not valid: 2 to 63 characters, lowercase letters, digits, '.', '_' or '-', starting with a letter"
    )]
    Name(String),
    #[error("operator {0:?} already exists")]
    Exists(String),
    #[error("no enabled operator {0:?}")]
    NotFound(String),
    #[error(
        "operator {0:?} is the last enabled admin: add another admin first, or nobody could manage operators, plans or tokens"
    )]
    LastAdmin(String),
    #[error("the password must have at least {min} characters")]
    WeakPassword { min: usize },
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("too many logins are being checked; try again in a moment")]
    Busy,
    #[error("database error: {}", crate::pg_error::describe(.0))]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for OperatorError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 12;

fn check_name(name: &str) -> Result<(), OperatorError> {
    let ok = (2..=63).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(OperatorError::Name(name.chars().take(80).collect()))
    }
}

/// Adds an operator; `actor` is who did it (audited).
pub async fn add(
    pool: &PgPool,
    name: &str,
    role: Role,
    password: &str,
    actor: &str,
) -> Result<i64, OperatorError> {
    check_name(name)?;
    if password.chars().count() < MIN_PASSWORD {
        return Err(OperatorError::WeakPassword { min: MIN_PASSWORD });
    }
    let hash = password::hash(password)?;
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(include_str!("operators/queries/operator_insert.sql"))
        .bind(name)
        .bind(role.as_str())
        .bind(&hash)
        .bind(actor)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
                OperatorError::Exists(name.to_string())
            }
            _ => OperatorError::Database(e),
        })?;
    audit::record(
        &mut tx,
        audit::Event {
            actor: actor.to_string(),
            action: audit::action::OPERATOR_ADDED,
            detail: serde_json::json!({ "operator": name, "role": role.as_str() }),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Disables an operator and ends their sessions. The last enabled admin
/// cannot be disabled (whoever asks: the CLI or the admin themselves).
pub async fn disable(pool: &PgPool, name: &str, actor: &str) -> Result<(), OperatorError> {
    let mut tx = pool.begin().await?;
    sqlx::query(include_str!("operators/queries/admins_lock.sql"))
        .execute(&mut *tx)
        .await?;
    let id: Option<i64> =
        sqlx::query_scalar(include_str!("operators/queries/operator_disable.sql"))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    if id.is_none() {
        return Err(OperatorError::NotFound(name.to_string()));
    }
    let admins: i64 = sqlx::query_scalar(include_str!("operators/queries/admins_enabled.sql"))
        .fetch_one(&mut *tx)
        .await?;
    if admins == 0 {
        // Rolled back with the transaction: the operator stays enabled.
        return Err(OperatorError::LastAdmin(name.to_string()));
    }
    audit::record(
        &mut tx,
        audit::Event {
            actor: actor.to_string(),
            action: audit::action::OPERATOR_DISABLED,
            detail: serde_json::json!({ "operator": name }),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One row of `operator list`.
#[derive(Debug, sqlx::FromRow, serde::Serialize)]
pub struct OperatorRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub created_by: String,
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn list(pool: &PgPool) -> Result<Vec<OperatorRow>, sqlx::Error> {
    sqlx::query_as(include_str!("operators/queries/operators_list.sql"))
        .fetch_all(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["ana", "joao.silva", "op-1", "a_b"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "Ana",
            "1ana",
            "ana silva",
            "ana;drop",
            &"a".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
