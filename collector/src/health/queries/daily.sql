-- One municipality's transmissions per local day ($2: its time zone),
-- the last $3 days.
SELECT (t.started_at AT TIME ZONE $2)::date AS day,
       coalesce(sum(t.rows) FILTER (WHERE t.state = 'committed'), 0)::int8 AS rows,
       coalesce(sum(extract(epoch FROM t.finished_at - t.started_at))
                FILTER (WHERE t.state = 'committed'), 0)::float8 AS seconds,
       count(*) FILTER (WHERE t.state = 'committed') AS committed,
       count(*) FILTER (WHERE t.state IN ('failed', 'aborted')) AS failed
FROM transmissor.transmissions t
WHERE t.ibge = $1::bpchar AND t.started_at >= now() - make_interval(days => $3)
GROUP BY 1
ORDER BY 1
