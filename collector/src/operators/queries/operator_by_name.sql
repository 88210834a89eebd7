SELECT id, name, role, password_hash FROM transmissor.operators
WHERE name = $1 AND disabled_at IS NULL
