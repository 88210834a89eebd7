-- The evaluator's first load: every transmission started since $1.
SELECT id, ibge::text AS ibge, job, state, started_at, finished_at, rows, error
FROM transmissor.transmissions
WHERE started_at >= $1
