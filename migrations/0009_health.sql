-- Each municipality's health, derived by the collector (issue #11): the
-- current state (one row per municipality, rewritten only when something
-- in it changes), every change of state (history), and what the derivation
-- needs beyond transmissions and heartbeats (time zone, local holidays).

-- NULL: the default time zone of the municipality's state (UF).
ALTER TABLE transmissor.municipalities ADD COLUMN timezone text;

-- Municipal holidays, on top of the national calendar.
CREATE TABLE transmissor.municipal_holidays (
    ibge  char(7) NOT NULL REFERENCES transmissor.municipalities (ibge) ON DELETE CASCADE,
    day   date NOT NULL,
    name  text NOT NULL DEFAULT '',
    PRIMARY KEY (ibge, day)
);

CREATE TABLE transmissor.municipality_health (
    ibge          char(7) PRIMARY KEY REFERENCES transmissor.municipalities (ibge) ON DELETE CASCADE,
    connectivity  text NOT NULL CHECK (connectivity IN ('online', 'offline', 'inactive', 'never')),
    data          text NOT NULL CHECK (data IN ('on_time', 'late', 'missing')),
    health        text NOT NULL CHECK (health IN ('ok', 'degraded', 'failing')),
    overall       text NOT NULL CHECK (overall IN ('ok', 'degraded', 'late', 'failing', 'missing',
                                                   'offline', 'inactive', 'never')),
    -- Typed reasons (monitor::Reason, serialized).
    reasons       jsonb NOT NULL DEFAULT '[]',
    -- Since when the overall state holds.
    since         timestamptz NOT NULL,
    -- When this row last changed.
    changed_at    timestamptz NOT NULL,
    last_success  timestamptz,
    last_rows     bigint,
    -- Rows committed per local day, oldest first, the last 30 days.
    daily_rows    bigint[] NOT NULL DEFAULT '{}',
    -- The last transmission of each job (health::view::JobLast).
    jobs          jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX municipality_health_overall ON transmissor.municipality_health (overall);

CREATE TABLE transmissor.health_history (
    id            bigserial PRIMARY KEY,
    ibge          char(7) NOT NULL REFERENCES transmissor.municipalities (ibge) ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    axis          text NOT NULL CHECK (axis IN ('connectivity', 'data', 'health', 'overall')),
    from_state    text,
    to_state      text NOT NULL,
    reason        text NOT NULL,
    reason_pt_br  text NOT NULL
);
CREATE INDEX health_history_ibge ON transmissor.health_history (ibge, at DESC);
CREATE INDEX health_history_at ON transmissor.health_history (at);

-- The last evaluation pass (one row): how fresh the states are.
CREATE TABLE transmissor.health_evaluations (
    one             boolean PRIMARY KEY DEFAULT true CHECK (one),
    evaluated_at    timestamptz NOT NULL,
    municipalities  integer NOT NULL,
    transitions     integer NOT NULL,
    duration_ms     integer NOT NULL
);

-- The evaluator reads what finished since its last pass, the failures
-- page the newest failures, a municipality's page its newest transmissions.
CREATE INDEX transmissions_finished ON transmissor.transmissions (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX transmissions_failures ON transmissor.transmissions (finished_at DESC)
    WHERE state IN ('failed', 'aborted');
CREATE INDEX transmissions_ibge_id ON transmissor.transmissions (ibge, id);
