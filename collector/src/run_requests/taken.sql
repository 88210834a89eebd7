-- The agent reports these requests taken; only its own municipality's, once.
UPDATE transmissor.run_requests
SET taken_at = now(), taken_by = $3
WHERE id = ANY($1) AND ibge = $2::bpchar AND taken_at IS NULL
RETURNING id
