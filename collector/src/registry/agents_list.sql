-- Agents for `agent list`, with what their latest heartbeat reported.
SELECT a.id, a.ibge::text AS ibge, m.name AS municipality, a.created_at, a.revoked_at, a.hostname,
       a.agent_version, a.os, a.cert_not_after, a.heartbeat_at, a.clock_offset_ms, a.spool_used_bytes,
       a.spool_limit_bytes, a.last_runs, a.warning, a.pec_version, a.job_source, a.plan_version,
       a.plan_expired, a.plan_refusal, a.key_list_serial, a.next_runs
FROM transmissor.agents a JOIN transmissor.municipalities m USING (ibge)
WHERE $1 OR a.revoked_at IS NULL
ORDER BY a.ibge, a.created_at
