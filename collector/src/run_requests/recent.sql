-- A municipality's newest requests, pending or not.
SELECT id, ibge::text AS ibge, job, requested_by, requested_at, expires_at, taken_at, taken_by,
       CASE WHEN taken_at IS NOT NULL THEN 'taken'
            WHEN expires_at <= now() THEN 'expired'
            ELSE 'pending' END AS status
FROM transmissor.run_requests
WHERE ibge = $1::bpchar
ORDER BY id DESC
LIMIT $2
