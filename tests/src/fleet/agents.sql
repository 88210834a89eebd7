-- One agent per fleet municipality ($1 codes, $2 their numbers).
INSERT INTO transmissor.agents
    (id, ibge, created_at, hostname, agent_version, os, cert_not_after, heartbeat_at,
     last_seen_at, pec_version, job_source, plan_version, spool_used_bytes, spool_limit_bytes)
SELECT gen_random_uuid(), v.ibge, now() - interval '380 days', 'ubs-' || v.n, '0.1.0',
       CASE WHEN v.n % 3 = 0 THEN 'windows' ELSE 'linux' END,
       CASE WHEN v.n % 41 = 5 THEN now() + interval '1 day'
            ELSE now() + make_interval(days => 20 + v.n % 300) END,
       CASE WHEN v.n % 97 = 1 THEN NULL
            WHEN v.n % 53 = 2 THEN now() - interval '2 hours'
            WHEN v.n % 89 = 3 THEN now() - interval '40 days'
            ELSE now() END,
       CASE WHEN v.n % 97 = 1 THEN NULL ELSE now() END,
       CASE WHEN v.n % 97 = 1 THEN NULL WHEN v.n % 17 = 6 THEN '5.3.21' ELSE '5.3.22' END,
       'central', NULL, (v.n % 50) * 1048576, 1073741824
FROM unnest($1::text[], $2::int[]) AS v(ibge, n)
