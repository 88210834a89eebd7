-- An operator's request to run a municipality's jobs now; NULL job: every
-- job. Returns the stored row.
INSERT INTO transmissor.run_requests (ibge, job, requested_by, expires_at)
SELECT m.ibge, $2, $3, now() + make_interval(secs => $4)
FROM transmissor.municipalities m
WHERE m.ibge = $1::bpchar
RETURNING id, ibge::text AS ibge, job, requested_by, requested_at, expires_at, taken_at, taken_by,
          'pending' AS status
