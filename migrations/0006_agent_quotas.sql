-- Per-agent quotas (issue #9): the Begin and PutBatch checks read an agent's
-- open transmissions and its transmissions of the last day through these
-- indexes, so their cost does not grow with the history kept.
CREATE INDEX transmissions_agent_open ON transmissor.transmissions (agent_id)
    WHERE state = 'open';
CREATE INDEX transmissions_agent_started ON transmissor.transmissions (agent_id, started_at);
