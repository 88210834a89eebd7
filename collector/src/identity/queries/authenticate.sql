-- The agent, and the presented certificate as issued to it ($2: serial),
-- and whether a certificate of the presented chain ($3: SPKI SHA-256 of
-- each CA certificate) belongs to a retired issuing CA. One round trip,
-- primary-key lookups only.
SELECT a.ibge::text AS ibge,
       a.revoked_at,
       a.cert_serial,
       c.serial IS NOT NULL AS issued,
       c.superseded_at,
       c.grace_until > now() AS in_grace,
       EXISTS (SELECT 1 FROM transmissor.retired_cas r WHERE r.spki_sha256 = ANY($3)) AS retired_issuer
FROM transmissor.agents a
LEFT JOIN transmissor.certificates c ON c.serial = $2 AND c.agent_id = a.id
WHERE a.id = $1
