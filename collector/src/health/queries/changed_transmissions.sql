-- What finished since $1, and what is still open (few).
SELECT id, ibge::text AS ibge, job, state, started_at, finished_at, rows, error
FROM transmissor.transmissions
WHERE finished_at >= $1
UNION ALL
SELECT id, ibge::text AS ibge, job, state, started_at, finished_at, rows, error
FROM transmissor.transmissions
WHERE state = 'open'
