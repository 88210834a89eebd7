-- A page of one municipality's state history, newest first.
SELECT id, at, axis, from_state, to_state, reason, reason_pt_br
FROM transmissor.health_history
WHERE ibge = $1::bpchar AND ($2::bigint IS NULL OR id < $2)
ORDER BY id DESC
LIMIT $3
