-- A renewal replaces agent $1's current certificate: it stays accepted
-- (except for renewals) for $2 seconds, for connections opened before.
UPDATE transmissor.certificates
SET superseded_at = now(), grace_until = now() + make_interval(secs => $2)
WHERE agent_id = $1 AND superseded_at IS NULL
