-- Requests still to hand to an agent: not taken, not expired.
SELECT id, ibge::text AS ibge, job, expires_at
FROM transmissor.run_requests
WHERE taken_at IS NULL AND expires_at > now()
