INSERT INTO transmissor.operators (name, role, password_hash, created_by)
VALUES ($1, $2, $3, $4)
RETURNING id
