-- Central, signed extraction plans (issue #10).
--
-- The collector stores each signed envelope byte for byte and serves it to
-- the agents in its scope; it cannot sign one, and the agents verify every
-- byte against the plan keys pinned at install. What the collector reads
-- from a plan (scope, jobs, targets, modes) it uses only to refuse a Begin
-- the plan does not define.
CREATE TABLE transmissor.plans (
    version      bigint PRIMARY KEY CHECK (version > 0),
    envelope     bytea NOT NULL,
    sha256       bytea NOT NULL UNIQUE,
    key_id       text NOT NULL,
    scope_all    boolean NOT NULL,
    scope_ibge   text[] NOT NULL DEFAULT '{}',
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    published_by text NOT NULL
);

-- Signed plan-key lists (key rotation), served so that an agent several
-- rotations behind can follow the chain from the key it pins.
CREATE TABLE transmissor.plan_key_lists (
    serial       bigint PRIMARY KEY CHECK (serial > 0),
    envelope     bytea NOT NULL,
    key_id       text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    published_by text NOT NULL
);

-- What each agent runs, from its heartbeats.
ALTER TABLE transmissor.agents
    ADD COLUMN pec_version     text,
    ADD COLUMN job_source      text,
    ADD COLUMN plan_version    bigint,
    ADD COLUMN plan_expired    boolean,
    ADD COLUMN plan_refusal    text,
    ADD COLUMN key_list_serial bigint,
    ADD COLUMN next_runs       jsonb;

