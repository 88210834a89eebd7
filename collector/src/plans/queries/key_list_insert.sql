-- Publishes a signed plan-key list with a serial above every earlier one.
INSERT INTO transmissor.plan_key_lists (serial, envelope, key_id, published_by)
SELECT $1, $2, $3, $4
WHERE NOT EXISTS (SELECT 1 FROM transmissor.plan_key_lists WHERE serial >= $1)
RETURNING serial
