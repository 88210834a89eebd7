-- Every municipality with its current agent (the non-revoked one heard
-- from last) and its own holidays.
SELECT m.ibge::text AS ibge, m.name, m.timezone, m.created_at,
       a.created_at AS enrolled_at, a.heartbeat_at, a.cert_not_after,
       a.plan_refusal, coalesce(a.plan_expired, false) AS plan_expired, a.pec_version,
       a.plan_version, a.spool_used_bytes,
       coalesce((SELECT array_agg(h.day) FROM transmissor.municipal_holidays h
                 WHERE h.ibge = m.ibge), '{}') AS holidays
FROM transmissor.municipalities m
LEFT JOIN transmissor.current_agents a ON a.ibge = m.ibge
