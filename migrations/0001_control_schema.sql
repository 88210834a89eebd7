-- Control schema of the collector. Everything the collector knows lives here,
-- so any number of collector replicas can serve the same database.

CREATE SCHEMA IF NOT EXISTS transmissor;
-- Staging relations of open transmissions (one table per transmission).
CREATE SCHEMA IF NOT EXISTS transmissor_staging;

CREATE TABLE transmissor.municipalities (
    ibge        char(7) PRIMARY KEY CHECK (ibge ~ '^[0-9]{7}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transmissor.agents (
    id          uuid PRIMARY KEY,
    ibge        char(7) NOT NULL REFERENCES transmissor.municipalities (ibge),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    revoked_reason text,
    last_seen_at timestamptz
);
CREATE INDEX agents_ibge ON transmissor.agents (ibge);

-- Target tables the collector created, with the schema they were created from.
CREATE TABLE transmissor.targets (
    name        text PRIMARY KEY,
    mode        text NOT NULL CHECK (mode IN ('snapshot', 'append')),
    columns     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transmissor.transmissions (
    id              bigserial PRIMARY KEY,
    ibge            char(7) NOT NULL REFERENCES transmissor.municipalities (ibge),
    agent_id        uuid NOT NULL REFERENCES transmissor.agents (id),
    run_id          uuid NOT NULL,
    job             text NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('snapshot', 'append')),
    target          text NOT NULL,
    plan_version    text NOT NULL DEFAULT '',
    columns         jsonb NOT NULL,
    source_snapshot text NOT NULL DEFAULT '',
    source_server_version integer NOT NULL DEFAULT 0,
    agent_version   text NOT NULL DEFAULT '',
    state           text NOT NULL DEFAULT 'open'
                    CHECK (state IN ('open', 'committed', 'failed', 'aborted')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    batches         integer NOT NULL DEFAULT 0,
    rows            bigint NOT NULL DEFAULT 0,
    raw_bytes       bigint NOT NULL DEFAULT 0,
    compressed_bytes bigint NOT NULL DEFAULT 0,
    error           text,
    UNIQUE (agent_id, run_id, job)
);
CREATE INDEX transmissions_latest ON transmissor.transmissions (ibge, job, started_at DESC);
CREATE INDEX transmissions_open ON transmissor.transmissions (state) WHERE state = 'open';

-- One row per batch loaded into a transmission's staging relation, written in
-- the same database transaction as the batch's rows: a row here means the
-- batch is durably staged, and a repeated batch is recognised by its key.
CREATE TABLE transmissor.batches (
    transmission_id  bigint NOT NULL REFERENCES transmissor.transmissions (id) ON DELETE CASCADE,
    seq              integer NOT NULL CHECK (seq >= 1),
    rows             bigint NOT NULL,
    raw_bytes        bigint NOT NULL,
    compressed_bytes bigint NOT NULL,
    crc32c           bigint NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transmission_id, seq)
);
