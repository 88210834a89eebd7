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
