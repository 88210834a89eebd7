-- The newest failed or aborted transmissions across the country.
SELECT t.id, t.ibge::text AS ibge, m.name, t.job, t.target, t.mode, t.state, t.started_at,
       t.finished_at,
       extract(epoch FROM t.finished_at - t.started_at)::float8 AS duration_seconds,
       t.rows, t.raw_bytes, t.compressed_bytes, t.plan_version, t.agent_version, t.error
FROM transmissor.transmissions t
JOIN transmissor.municipalities m ON m.ibge = t.ibge
WHERE t.state IN ('failed', 'aborted') AND t.finished_at IS NOT NULL
ORDER BY t.finished_at DESC
LIMIT $1
