INSERT INTO transmissor.sessions (token_sha256, operator_id, csrf_token, expires_at, source_addr)
VALUES ($1, $2, $3, now() + $4 * interval '1 second', $5)
