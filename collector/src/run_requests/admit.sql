-- May municipality $1 get one more request for job $2 (NULL: every job)?
-- Its pending request for the same job, if any, and how many requests it
-- got in the last $3 seconds (served by run_requests_ibge). Run holding
-- the municipality's advisory lock (lock.sql), so two requests at once
-- cannot both pass.
SELECT
    (SELECT r.id FROM transmissor.run_requests r
      WHERE r.ibge = $1::bpchar AND r.job IS NOT DISTINCT FROM $2
        AND r.taken_at IS NULL AND r.expires_at > now()
      ORDER BY r.id DESC LIMIT 1) AS pending,
    (SELECT count(*) FROM transmissor.run_requests r
      WHERE r.ibge = $1::bpchar AND r.requested_at > now() - make_interval(secs => $3)) AS recent
