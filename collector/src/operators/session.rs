//! Sessions: a random 256-bit token in a `Secure; HttpOnly; SameSite=Strict`
//! cookie, stored only as its SHA-256; a new one at every login (a session
//! id is never reused across logins); an idle expiry that slides and an
//! absolute one that does not; a CSRF token per session for every write.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::guard::LoginGuard;
use super::{OperatorError, Role};

/// The cookie's name: `__Host-` makes browsers keep it only when it is
/// `Secure`, has `Path=/` and no `Domain` (no sibling host can set it).
pub const COOKIE: &str = "__Host-transmissor_session";

/// Who is logged in.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator_id: i64,
    pub name: String,
    pub role: Role,
    /// To be echoed by every write (form field or `X-CSRF-Token` header).
    pub csrf: String,
}

/// A new session: the cookie value and the session.
pub struct NewSession {
    pub token: String,
    pub session: Session,
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Checks a name and password on the guard's hashing pool (an unknown name
/// against the decoy, at the same cost); on success opens a new session
/// lasting at most `lifetime`. `None` for a wrong name or password
/// (indistinguishable); [`OperatorError::Busy`] when the pool's queue is
/// full. Throttling ([`LoginGuard::admit`]) is the caller's, before this.
pub async fn login(
    pool: &PgPool,
    guard: &LoginGuard,
    name: &str,
    pw: &str,
    lifetime: Duration,
    source: &str,
) -> Result<Option<NewSession>, OperatorError> {
    let row: Option<(i64, String, String, String)> =
        sqlx::query_as(include_str!("queries/operator_by_name.sql"))
            .bind(name)
            .fetch_optional(pool)
            .await?;
    let Some((id, name, role, phc)) = row else {
        // The same work, on the same pool, as a real check.
        guard
            .verify(pw, None)
            .await
            .map_err(|_| OperatorError::Busy)?;
        return Ok(None);
    };
    let ok = guard
        .verify(pw, Some(phc))
        .await
        .map_err(|_| OperatorError::Busy)?;
    if !ok {
        return Ok(None);
    }
    let Ok(role) = role.parse::<Role>() else {
        return Ok(None);
    };
    let token = random_token();
    let csrf = random_token();
    sqlx::query(include_str!("queries/session_insert.sql"))
        .bind(digest(&token))
        .bind(id)
        .bind(&csrf)
        .bind(lifetime.as_secs() as f64)
        .bind(source)
        .execute(pool)
        .await?;
    Ok(Some(NewSession {
        token,
        session: Session {
            operator_id: id,
            name,
            role,
            csrf,
        },
    }))
}

/// The live session of `token`, if any (idle for less than `idle`).
pub async fn lookup(
    pool: &PgPool,
    token: &str,
    idle: Duration,
) -> Result<Option<Session>, sqlx::Error> {
    let row: Option<(i64, String, String, String)> =
        sqlx::query_as(include_str!("queries/session_touch.sql"))
            .bind(digest(token))
            .bind(idle.as_secs() as f64)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(operator_id, name, role, csrf)| {
        Some(Session {
            operator_id,
            name,
            role: role.parse().ok()?,
            csrf,
        })
    }))
}

/// Ends a session.
pub async fn logout(pool: &PgPool, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query(include_str!("queries/session_delete.sql"))
        .bind(digest(token))
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes expired sessions; returns how many.
pub async fn prune(pool: &PgPool, idle: Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(include_str!("queries/sessions_prune.sql"))
        .bind(idle.as_secs() as f64)
        .execute(pool)
        .await?
        .rows_affected())
}

/// Compares two tokens in constant time.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
