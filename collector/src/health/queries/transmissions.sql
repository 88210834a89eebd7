-- A page of transmissions across the country, newest first, by id cursor.
SELECT t.id, t.ibge::text AS ibge, m.name, t.job, t.target, t.mode, t.state, t.started_at,
       t.finished_at,
       extract(epoch FROM t.finished_at - t.started_at)::float8 AS duration_seconds,
       t.rows, t.raw_bytes, t.compressed_bytes, t.plan_version, t.agent_version, t.error
FROM transmissor.transmissions t
JOIN transmissor.municipalities m ON m.ibge = t.ibge
WHERE ($1::text[] IS NULL OR t.state = ANY ($1))
  AND ($2::timestamptz IS NULL OR t.started_at >= $2)
  AND ($3::timestamptz IS NULL OR t.started_at < $3)
  AND ($4::bigint IS NULL OR t.id < $4)
ORDER BY t.id DESC
LIMIT $5
