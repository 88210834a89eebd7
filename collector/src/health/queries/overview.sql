-- Every municipality with its stored health and current agent. Filtered
-- and sorted by the caller (5,570 rows at most).
SELECT m.ibge::text AS ibge, m.name,
       h.connectivity, h.data, h.health, h.overall, h.reasons, h.since, h.changed_at,
       h.last_success, h.last_rows, h.daily_rows, h.jobs,
       a.id AS agent_id, a.agent_version, a.pec_version, a.plan_version, a.cert_not_after,
       a.heartbeat_at
FROM transmissor.municipalities m
JOIN transmissor.municipality_health h ON h.ibge = m.ibge
LEFT JOIN transmissor.current_agents a ON a.ibge = m.ibge
WHERE $1::text IS NULL OR m.ibge = $1::bpchar
