-- Agents, with their municipality's name ($1: one municipality or all;
-- $2: include revoked ones).
SELECT a.id, a.ibge::text AS ibge, m.name, a.hostname, a.os, a.agent_version AS version,
       a.pec_version, a.job_source, a.plan_version,
       CASE WHEN a.plan_refusal IS NOT NULL THEN 'refused: ' || a.plan_refusal
            WHEN a.plan_expired THEN 'expired'
            WHEN a.plan_version IS NOT NULL THEN 'applied' END AS plan_status,
       a.cert_not_after, a.heartbeat_at AS last_heartbeat, a.created_at AS enrolled_at,
       a.revoked_at, a.spool_used_bytes, a.spool_limit_bytes, a.doctor
FROM transmissor.agents a
JOIN transmissor.municipalities m ON m.ibge = a.ibge
WHERE ($1::text IS NULL OR a.ibge = $1::bpchar) AND ($2 OR a.revoked_at IS NULL)
ORDER BY a.ibge, a.created_at DESC
