-- Published plans for `plan list`, newest first.
SELECT version, key_id, scope_all, scope_ibge, issued_at, expires_at, published_at, published_by,
       encode(sha256, 'hex') AS sha256
FROM transmissor.plans
ORDER BY version DESC
LIMIT $1
