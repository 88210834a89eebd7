-- A page of one municipality's transmissions, newest first, by id cursor
-- (index transmissions_ibge_id).
SELECT t.id, t.ibge::text AS ibge, m.name, t.job, t.target, t.mode, t.state, t.started_at,
       t.finished_at,
       extract(epoch FROM t.finished_at - t.started_at)::float8 AS duration_seconds,
       t.rows, t.raw_bytes, t.compressed_bytes, t.plan_version, t.agent_version, t.error
FROM transmissor.transmissions t
JOIN transmissor.municipalities m ON m.ibge = t.ibge
WHERE t.ibge = $1::bpchar
  AND ($2::text[] IS NULL OR t.state = ANY ($2))
  AND ($3::timestamptz IS NULL OR t.started_at >= $3)
  AND ($4::timestamptz IS NULL OR t.started_at < $4)
  AND ($5::bigint IS NULL OR t.id < $5)
ORDER BY t.id DESC
LIMIT $6
