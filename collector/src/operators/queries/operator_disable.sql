-- Disables an operator and ends their sessions at once.
WITH d AS (
    UPDATE transmissor.operators SET disabled_at = now()
    WHERE name = $1 AND disabled_at IS NULL
    RETURNING id
), s AS (
    DELETE FROM transmissor.sessions WHERE operator_id IN (SELECT id FROM d)
)
SELECT id FROM d
