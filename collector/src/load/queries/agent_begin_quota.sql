-- What one agent holds and has started: its open transmissions and its
-- transmissions of the last day (both served by indexes on agent_id).
SELECT
    (SELECT count(*) FROM transmissor.transmissions
      WHERE agent_id = $1 AND state = 'open') AS open,
    (SELECT count(*) FROM transmissor.transmissions
      WHERE agent_id = $1 AND started_at > now() - interval '1 day') AS today
