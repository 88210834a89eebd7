UPDATE transmissor.enrollment_tokens SET consumed_at = now(), consumed_from = $3
WHERE id = $1 AND secret_sha256 = $2 AND ibge = $4::bpchar AND consumed_at IS NULL AND expires_at > now()
RETURNING ibge::text
