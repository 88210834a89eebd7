-- Open transmissions nobody will finish: no Begin or batch for $1 seconds,
-- or their agent was revoked (a revoked agent can no longer commit).
SELECT t.id, t.ibge::text, t.agent_id, (a.revoked_at IS NOT NULL) AS revoked
  FROM transmissor.transmissions t
  JOIN transmissor.agents a ON a.id = t.agent_id
 WHERE t.state = 'open'
   AND (a.revoked_at IS NOT NULL
        OR greatest(t.started_at,
                    (SELECT max(b.received_at) FROM transmissor.batches b
                      WHERE b.transmission_id = t.id))
           < now() - make_interval(secs => $1))
 ORDER BY t.id
 LIMIT $2
