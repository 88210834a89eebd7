-- The agent a municipality is represented by: of its non-revoked agents,
-- the one heard from last (then the newest). One definition for the
-- health evaluation and the overview.
CREATE VIEW transmissor.current_agents AS
SELECT DISTINCT ON (a.ibge) a.*
FROM transmissor.agents a
WHERE a.revoked_at IS NULL
ORDER BY a.ibge, a.heartbeat_at DESC NULLS LAST, a.created_at DESC;
