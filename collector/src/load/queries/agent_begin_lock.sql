-- One Begin at a time per agent checks its quota and inserts (held until
-- the transaction ends): the open-transmission quota is exact.
SELECT pg_advisory_xact_lock(hashtext('transmissor.agent_begin:' || $1::text))
