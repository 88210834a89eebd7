-- A live session of an enabled operator: idle time slides, the absolute
-- expiry does not.
UPDATE transmissor.sessions s
SET last_seen_at = now()
FROM transmissor.operators o
WHERE s.token_sha256 = $1
  AND o.id = s.operator_id
  AND o.disabled_at IS NULL
  AND s.expires_at > now()
  AND s.last_seen_at > now() - $2 * interval '1 second'
RETURNING o.id, o.name, o.role, s.csrf_token
