SELECT o.id, o.name, o.role, o.created_at, o.created_by, o.disabled_at,
       (SELECT max(s.last_seen_at) FROM transmissor.sessions s WHERE s.operator_id = o.id) AS last_seen_at
FROM transmissor.operators o
ORDER BY o.name
