-- Agents of a municipality that are not revoked: a token for it would
-- re-enroll the municipality next to (and then instead of) them.
SELECT count(*) FROM transmissor.agents
WHERE ibge = $1::bpchar AND revoked_at IS NULL
