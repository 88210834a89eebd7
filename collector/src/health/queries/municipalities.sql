-- Every municipality with its current agent (the non-revoked one heard
-- from last) and its own holidays.
SELECT m.ibge::text AS ibge, m.name, m.timezone, m.created_at,
       a.created_at AS enrolled_at, a.heartbeat_at, a.cert_not_after,
       a.plan_refusal, coalesce(a.plan_expired, false) AS plan_expired, a.pec_version,
       a.plan_version, a.spool_used_bytes,
       coalesce((SELECT array_agg(h.day) FROM transmissor.municipal_holidays h
                 WHERE h.ibge = m.ibge), '{}') AS holidays
FROM transmissor.municipalities m
LEFT JOIN LATERAL (
    SELECT * FROM transmissor.agents a
    WHERE a.ibge = m.ibge AND a.revoked_at IS NULL
    ORDER BY a.heartbeat_at DESC NULLS LAST, a.created_at DESC
    LIMIT 1
) a ON true
