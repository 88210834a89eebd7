-- Publishes a signed plan; a version is published once (primary key), and
-- only a version above every earlier one (checked in the same statement).
INSERT INTO transmissor.plans
    (version, envelope, sha256, key_id, scope_all, scope_ibge, issued_at, expires_at, published_by)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
WHERE NOT EXISTS (SELECT 1 FROM transmissor.plans WHERE version >= $1)
RETURNING version
