-- Operators' requests to run a municipality's jobs now, outside the
-- schedule (a retry). The collector hands each one to the municipality's
-- agent in heartbeat answers until the agent reports it taken; a request
-- nobody took by `expires_at` (agent offline) is shown as expired.
CREATE TABLE transmissor.run_requests (
    id            bigserial PRIMARY KEY,
    ibge          char(7) NOT NULL REFERENCES transmissor.municipalities (ibge) ON DELETE CASCADE,
    -- NULL: every job of the agent's plan.
    job           text CHECK (job IS NULL OR job ~ '^[a-z_][a-z0-9_]{0,62}$'),
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    taken_at      timestamptz,
    taken_by      uuid REFERENCES transmissor.agents (id) ON DELETE SET NULL
);
CREATE INDEX run_requests_pending ON transmissor.run_requests (ibge) WHERE taken_at IS NULL;
CREATE INDEX run_requests_ibge ON transmissor.run_requests (ibge, id DESC);
