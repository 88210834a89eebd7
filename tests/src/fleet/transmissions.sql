-- $3 days of one daily transmission per job ($4) for every fleet
-- municipality that has ever reported; the newest of `i % 31 == 4` failed.
INSERT INTO transmissor.transmissions
    (ibge, agent_id, run_id, job, mode, target, plan_version, columns, agent_version, state,
     started_at, finished_at, batches, rows, raw_bytes, compressed_bytes, error)
SELECT a.ibge, a.id, gen_random_uuid(), j.job, 'snapshot', j.job, '1', '[]', '0.1.0',
       CASE WHEN v.n % 31 = 4 AND d.d = 0 THEN 'failed' ELSE 'committed' END,
       s.at, s.at + make_interval(secs => 20 + (v.n * 7 + d.d) % 90),
       1,
       CASE WHEN v.n % 31 = 4 AND d.d = 0 THEN 0
            ELSE 1000 + (v.n % 400) * 10 + d.d % 7 * 3 + (hashint4(v.n * 1000 + d.d) % 40) END,
       200000, 40000,
       CASE WHEN v.n % 31 = 4 AND d.d = 0
            THEN 'source query failed: relation "tb_cidadao" does not exist (42P01)' END
FROM unnest($1::text[], $2::int[]) AS v(ibge, n)
JOIN transmissor.agents a ON a.ibge = v.ibge
CROSS JOIN generate_series(0, $3 - 1) AS d(d)
CROSS JOIN unnest($4::text[]) AS j(job)
CROSS JOIN LATERAL (
    SELECT now() - make_interval(days => d.d, hours => 1, mins => v.n % 120) AS at
) s
-- Nothing after the agent went silent; ids in time order, as Begin gives them.
WHERE a.heartbeat_at IS NOT NULL AND s.at < a.heartbeat_at
ORDER BY s.at
