//! The append-only audit log (`transmissor.audit_log`; a trigger refuses
//! UPDATE, DELETE and TRUNCATE): who did what, when, to which municipality
//! or agent, from which address.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// Actions recorded.
pub mod action {
    pub const TOKEN_ISSUED: &str = "token.issued";
    pub const TOKEN_CONSUMED: &str = "token.consumed";
    pub const TOKEN_EXPIRED: &str = "token.expired";
    pub const TOKEN_REFUSED: &str = "token.refused";
    pub const AGENT_ENROLLED: &str = "agent.enrolled";
    pub const AGENT_RENEWED: &str = "agent.renewed";
    pub const AGENT_REVOKED: &str = "agent.revoked";
    /// A renewal refused (rate limit; the first refusal of each window).
    pub const AGENT_RENEWAL_REFUSED: &str = "agent.renewal_refused";
    /// Two keys renewing one agent identity: key theft.
    pub const AGENT_PARALLEL_RENEWAL: &str = "agent.parallel_renewal";
    pub const CA_RETIRED: &str = "ca.retired";
    pub const CA_INITIALIZED: &str = "ca.initialized";
    pub const CA_ROTATED: &str = "ca.rotated";
    pub const MUNICIPALITY_ADDED: &str = "municipality.added";
    pub const PLAN_PUBLISHED: &str = "plan.published";
    pub const PLAN_KEYS_PUBLISHED: &str = "plan.keys_published";
    pub const OPERATOR_ADDED: &str = "operator.added";
    pub const OPERATOR_DISABLED: &str = "operator.disabled";
    pub const OPERATOR_LOGIN: &str = "operator.login";
    /// A login checked and refused (wrong name or password); the name as
    /// sent, made printable, is in the detail. Throttled attempts are
    /// counted in `/metrics`, not recorded one by one.
    pub const OPERATOR_LOGIN_FAILED: &str = "operator.login_failed";
    /// An operator asked a municipality's agent to run now (a retry).
    pub const RUN_REQUESTED: &str = "run.requested";
}

/// One event to record.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub actor: String,
    pub action: &'static str,
    pub ibge: Option<String>,
    pub agent_id: Option<Uuid>,
    pub source_addr: Option<String>,
    pub detail: serde_json::Value,
}

/// The actor of a failed login (nobody is logged in).
pub const ANONYMOUS_WEB: &str = "anonymous (web)";

/// `operator:<name>` for actions an operator takes over HTTP.
pub fn web_operator(name: &str) -> String {
    format!("operator:{name} (web)")
}

/// `operator:<login>` for commands run by people.
pub fn operator() -> String {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| process_uid());
    format!("operator:{who}")
}

/// `uid <n>` of this process, when no login name is known.
fn process_uid() -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return format!("uid {}", m.uid());
        }
    }
    "unknown".into()
}

pub fn agent_actor(id: Uuid) -> String {
    format!("agent:{id}")
}

pub async fn record(conn: &mut PgConnection, e: Event) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO transmissor.audit_log (actor, action, ibge, agent_id, source_addr, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&e.actor)
    .bind(e.action)
    .bind(&e.ibge)
    .bind(e.agent_id)
    .bind(&e.source_addr)
    .bind(if e.detail.is_null() {
        serde_json::json!({})
    } else {
        e.detail
    })
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Entry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub ibge: Option<String>,
    pub agent_id: Option<Uuid>,
    pub source_addr: Option<String>,
    pub detail: serde_json::Value,
}

pub async fn latest(pool: &sqlx::PgPool, limit: i64) -> Result<Vec<Entry>, sqlx::Error> {
    let mut rows: Vec<Entry> = sqlx::query_as(
        "SELECT id, at, actor, action, ibge::text AS ibge, agent_id, source_addr, detail \
         FROM transmissor.audit_log ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.reverse();
    Ok(rows)
}

pub fn render(rows: &[Entry]) -> String {
    let mut out = String::new();
    for r in rows {
        // The detail may carry what an agent sent: escaped for the terminal.
        let line = format!(
            "{}  {:<18} {:<45} ibge={} agent={} from={} {}",
            r.at.format("%Y-%m-%d %H:%M:%S"),
            r.action,
            r.actor,
            r.ibge.as_deref().unwrap_or("-"),
            r.agent_id
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            r.source_addr.as_deref().unwrap_or("-"),
            if r.detail.as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else {
                r.detail.to_string()
            },
        );
        out.push_str(&transmissor_proto::terminal::printable(&line));
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(audit log is empty)\n");
    }
    out
}
