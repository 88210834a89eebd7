-- The facts behind each state of tests/health.rs.
INSERT INTO transmissor.municipalities (ibge, name, created_at) VALUES
    ('3550308', 'São Paulo', now() - interval '60 days'),
    ('3304557', 'Rio de Janeiro', now() - interval '60 days'),
    ('3106200', 'Belo Horizonte', now() - interval '60 days'),
    ('5300108', 'Brasília', now() - interval '60 days'),
    ('4106902', 'Curitiba', now() - interval '60 days'),
    ('4314902', 'Porto Alegre', now() - interval '60 days'),
    ('2927408', 'Salvador', now() - interval '60 days'),
    ('2304400', 'Fortaleza', now() - interval '60 days');

INSERT INTO transmissor.agents (id, ibge, created_at, agent_version, os, cert_not_after,
                                heartbeat_at, pec_version)
SELECT gen_random_uuid(), v.ibge, now() - v.enrolled, '0.1.0', 'linux',
       now() + v.cert_left, now() - v.silent, '5.3.21'
FROM (VALUES
    ('3550308', interval '50 days', interval '300 days', interval '0'),
    ('3304557', interval '50 days', interval '300 days', NULL),
    ('3106200', interval '50 days', interval '300 days', interval '2 hours'),
    ('5300108', interval '50 days', interval '300 days', interval '40 days'),
    ('4106902', interval '50 days', interval '300 days', interval '0'),
    ('4314902', interval '50 days', interval '1 day', interval '0'),
    -- Salvador enrolled four days ago, Fortaleza a month ago: neither ever
    -- committed its planned job.
    ('2927408', interval '4 days', interval '300 days', interval '0'),
    ('2304400', interval '30 days', interval '300 days', interval '0')
) AS v(ibge, enrolled, cert_left, silent);

UPDATE transmissor.agents SET heartbeat_at = NULL, pec_version = NULL WHERE ibge = '3304557';

-- São Paulo, Curitiba and Porto Alegre commit; Curitiba's last run failed.
INSERT INTO transmissor.transmissions (ibge, agent_id, run_id, job, mode, target, columns, state,
                                       started_at, finished_at, rows, error)
SELECT a.ibge, a.id, gen_random_uuid(), 'visitas', 'snapshot', 'visitas', '[]', v.state,
       now() - v.ago, now() - v.ago + interval '30 seconds', v.rows, v.error
FROM (VALUES
    ('3550308', 'committed', interval '1 hour', 5000, NULL),
    ('4314902', 'committed', interval '1 hour', 7000, NULL),
    ('4106902', 'committed', interval '2 hours', 3000, NULL)
) AS v(ibge, state, ago, rows, error)
JOIN transmissor.agents a ON a.ibge = v.ibge;

INSERT INTO transmissor.transmissions (ibge, agent_id, run_id, job, mode, target, columns, state,
                                       started_at, finished_at, rows, error)
SELECT ibge, id, gen_random_uuid(), 'visitas', 'snapshot', 'visitas', '[]', 'failed',
       now() - interval '1 hour', now() - interval '1 hour' + interval '30 seconds', 0,
       'source query failed: relation "tb_cidadao" does not exist (42P01)'
FROM transmissor.agents WHERE ibge = '4106902';
