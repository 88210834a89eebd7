INSERT INTO transmissor.certificates
    (serial, agent_id, not_before, not_after, reason, spki_sha256, chain_pem)
VALUES ($1, $2, $3, $4, $5, $6, $7)
