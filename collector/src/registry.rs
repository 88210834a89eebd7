//! Municipalities and agents known to the collector.

use sqlx::PgPool;
use uuid::Uuid;

use transmissor_proto::identity::Ibge;

pub async fn add_municipality(pool: &PgPool, ibge: Ibge, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO transmissor.municipalities (ibge, name) VALUES ($1, $2) \
         ON CONFLICT (ibge) DO UPDATE SET name = EXCLUDED.name",
    )
    .bind(ibge.as_str())
    .bind(name)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn add_agent(pool: &PgPool, ibge: Ibge, agent_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO transmissor.agents (id, ibge) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(agent_id)
    .bind(ibge.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn revoke_agent(
    pool: &PgPool,
    agent_id: Uuid,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE transmissor.agents SET revoked_at = now(), revoked_reason = $2 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(agent_id)
    .bind(reason)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// An agent as `agent list` shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AgentRow {
    pub id: Uuid,
    pub ibge: String,
    pub municipality: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub hostname: Option<String>,
    pub agent_version: Option<String>,
    pub os: Option<String>,
    pub cert_not_after: Option<chrono::DateTime<chrono::Utc>>,
    pub heartbeat_at: Option<chrono::DateTime<chrono::Utc>>,
    pub clock_offset_ms: Option<i64>,
    pub spool_used_bytes: Option<i64>,
    pub spool_limit_bytes: Option<i64>,
    pub last_runs: Option<serde_json::Value>,
    pub warning: Option<String>,
    /// PEC version of the source database (newest `tb_migracao` entry).
    pub pec_version: Option<String>,
    /// `plan` (signed central plan) or `local` (config jobs, development).
    pub job_source: Option<String>,
    pub plan_version: Option<i64>,
    pub plan_expired: Option<bool>,
    /// Why the last plan offered was refused (the running one goes on).
    pub plan_refusal: Option<String>,
    pub key_list_serial: Option<i64>,
    /// `[{"job": .., "next_at": ..}]`: the next scheduled run of each job.
    pub next_runs: Option<serde_json::Value>,
}

impl AgentRow {
    /// The plan cell: `43 applied`, `43 expired`, `local`, `none` (a
    /// refusal is shown at the end of the line).
    pub fn plan_cell(&self) -> String {
        match (self.job_source.as_deref(), self.plan_version) {
            (Some("local"), _) => "local".to_string(),
            (_, Some(v)) if v > 0 => format!(
                "{v} {}",
                if self.plan_expired == Some(true) {
                    "expired"
                } else {
                    "applied"
                }
            ),
            (Some("plan"), _) => "none".to_string(),
            _ => "-".to_string(),
        }
    }

    /// The earliest next run, as `job at YYYY-MM-DD HH:MM`.
    pub fn next_run_cell(&self) -> String {
        self.next_runs
            .as_ref()
            .and_then(|v| v.as_array())
            .and_then(|a| {
                a.iter()
                    .filter_map(|j| Some((j["next_at"].as_str()?, j["job"].as_str()?)))
                    .min()
            })
            .and_then(|(at, job)| {
                let at = chrono::DateTime::parse_from_rfc3339(at).ok()?;
                Some(format!("{job} at {}", at.format("%Y-%m-%d %H:%M")))
            })
            .unwrap_or_else(|| "-".into())
    }
}

pub async fn list_agents(
    pool: &PgPool,
    include_revoked: bool,
) -> Result<Vec<AgentRow>, sqlx::Error> {
    sqlx::query_as(include_str!("registry/agents_list.sql"))
        .bind(include_revoked)
        .fetch_all(pool)
        .await
}

fn ago(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = (chrono::Utc::now() - t).num_seconds().max(0);
            match s {
                0..=119 => format!("{s}s ago"),
                120..=7199 => format!("{}m ago", s / 60),
                7200..=172_799 => format!("{}h ago", s / 3600),
                _ => format!("{}d ago", s / 86_400),
            }
        }
    }
}

/// The table printed by `agent list`.
pub fn render_agents(rows: &[AgentRow]) -> String {
    let mut out = format!(
        "{:<36}  {:<7}  {:<16}  {:<8}  {:<8}  {:<8}  {:<12}  {:<20}  {:<10}  {:>8}  {:<9}  {:<26}  LAST RUNS / WARNING\n",
        "AGENT",
        "IBGE",
        "MUNICIPALITY",
        "STATE",
        "VERSION",
        "PEC",
        "PLAN",
        "CERT EXPIRES (UTC)",
        "LAST SEEN",
        "CLOCK",
        "SPOOL",
        "NEXT RUN (UTC)"
    );
    for r in rows {
        let runs = r
            .last_runs
            .as_ref()
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .map(|j| {
                        format!(
                            "{}={}",
                            j["job"].as_str().unwrap_or("?"),
                            j["outcome"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let spool = match (r.spool_used_bytes, r.spool_limit_bytes) {
            (Some(u), Some(l)) if l > 0 => format!("{:.0}%", u as f64 * 100.0 / l as f64),
            _ => "-".into(),
        };
        let muni: String = r.municipality.chars().take(16).collect();
        // Version, runs and warning come from the agent: escaped for the terminal.
        let line = format!(
            "{:<36}  {:<7}  {:<16}  {:<8}  {:<8}  {:<8}  {:<12}  {:<20}  {:<10}  {:>8}  {:<9}  {:<26}  {}{}",
            r.id,
            r.ibge,
            muni,
            if r.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
            r.agent_version.as_deref().unwrap_or("-"),
            r.pec_version.as_deref().unwrap_or("-"),
            r.plan_cell(),
            r.cert_not_after
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "-".into()),
            ago(r.heartbeat_at),
            r.clock_offset_ms
                .map(|o| format!("{:+.1}s", o as f64 / 1000.0))
                .unwrap_or_else(|| "-".into()),
            spool,
            r.next_run_cell(),
            runs,
            [
                r.plan_refusal
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .map(|p| format!("  PLAN REFUSED: {p}")),
                r.warning.as_deref().map(|w| format!("  WARNING: {w}")),
            ]
            .into_iter()
            .flatten()
            .collect::<String>(),
        );
        out.push_str(&transmissor_proto::terminal::printable(&line));
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no agents)\n");
    }
    out
}

/// Revokes agents (one by id, or every active agent of a municipality),
/// recording each in the audit log. Returns the ids revoked.
pub async fn revoke(
    pool: &PgPool,
    agent: Option<Uuid>,
    ibge: Option<Ibge>,
    reason: &str,
    actor: &str,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let revoked: Vec<(Uuid, String)> = sqlx::query_as(
        "UPDATE transmissor.agents SET revoked_at = now(), revoked_reason = $3 \
         WHERE revoked_at IS NULL AND (id = $1 OR ibge = $2::bpchar) RETURNING id, ibge::text",
    )
    .bind(agent)
    .bind(ibge.map(|i| i.to_string()))
    .bind(reason)
    .fetch_all(&mut *tx)
    .await?;
    for (id, ibge) in &revoked {
        crate::audit::record(
            &mut tx,
            crate::audit::Event {
                actor: actor.to_string(),
                action: crate::audit::action::AGENT_REVOKED,
                ibge: Some(ibge.clone()),
                agent_id: Some(*id),
                detail: serde_json::json!({ "reason": reason }),
                ..Default::default()
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_strings_reach_the_terminal_without_control_characters() {
        let bad = "\x1b[2J\x1b]0;pwned\x07\u{9b}1m\u{202e}";
        let row = AgentRow {
            id: Uuid::nil(),
            ibge: "3550308".into(),
            municipality: "São Paulo".into(),
            created_at: chrono::Utc::now(),
            revoked_at: None,
            hostname: Some(format!("host{bad}")),
            agent_version: Some(format!("1.0{bad}")),
            os: Some(format!("linux{bad}")),
            cert_not_after: None,
            heartbeat_at: None,
            clock_offset_ms: None,
            spool_used_bytes: None,
            spool_limit_bytes: None,
            last_runs: Some(
                serde_json::json!([{"job": format!("j{bad}"), "outcome": format!("ok{bad}")}]),
            ),
            warning: Some(format!("warning{bad}")),
            pec_version: Some(format!("5.3{bad}")),
            job_source: Some("plan".into()),
            plan_version: Some(4),
            plan_expired: Some(false),
            plan_refusal: Some(format!("plan 5 refused{bad}")),
            key_list_serial: None,
            next_runs: None,
        };
        let out = render_agents(&[row]);
        assert!(out.contains("WARNING: warning\\u{1b}[2J"), "{out}");
        assert!(
            out.contains("PLAN REFUSED: plan 5 refused\\u{1b}[2J"),
            "{out}"
        );
        for c in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
            assert!(!out.contains(c), "{c:?} in {out:?}");
        }
    }
}
