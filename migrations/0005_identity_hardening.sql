-- Identity hardening (issue #9): only an agent's current certificate (and
-- superseded ones for a bounded overlap) authenticates; renewals are
-- rate-limited and refusals counted, not audited one by one; enrollment
-- failures are counted per real token id in one row per key; issuing CAs can
-- be retired.

-- The agent's current certificate, checked on every call.
ALTER TABLE transmissor.agents
    ADD COLUMN cert_serial            text,
    -- Refused renewals in the current window; only the first one of a
    -- window is written to the audit log.
    ADD COLUMN renew_refusals         integer NOT NULL DEFAULT 0,
    ADD COLUMN renew_refusals_since   timestamptz;

ALTER TABLE transmissor.certificates
    -- When a newer certificate replaced this one (NULL while current).
    ADD COLUMN superseded_at  timestamptz,
    -- Until when a superseded certificate still authenticates (calls on
    -- connections opened before the renewal); never for a renewal.
    ADD COLUMN grace_until    timestamptz,
    -- SHA-256 of the certified public key, and the chain as returned: a
    -- renewal whose answer was lost is answered again, not re-issued.
    ADD COLUMN spki_sha256    bytea,
    ADD COLUMN chain_pem      text;

-- Existing installations: the latest certificate of each agent is current,
-- every earlier one was superseded when its successor was issued.
WITH ordered AS (
    SELECT serial, agent_id,
           lead(issued_at) OVER (PARTITION BY agent_id ORDER BY issued_at, serial) AS next_at,
           row_number() OVER (PARTITION BY agent_id ORDER BY issued_at DESC, serial DESC) AS rn
    FROM transmissor.certificates
)
UPDATE transmissor.certificates c SET superseded_at = o.next_at, grace_until = o.next_at + interval '2 hours'
FROM ordered o WHERE o.serial = c.serial AND o.rn > 1;

UPDATE transmissor.agents a SET cert_serial = c.serial
FROM transmissor.certificates c
WHERE c.agent_id = a.id AND c.superseded_at IS NULL;

-- Renewals counted per agent and window.
CREATE INDEX certificates_agent_renewals ON transmissor.certificates (agent_id, issued_at)
    WHERE reason = 'renew';

-- Failed enrollment attempts: one counter per key ('token:<id>' for a token
-- that exists, 'addr:<ip>' for the coarse per-address limit), checked and
-- incremented by one statement. Rows whose window ended are pruned.
CREATE TABLE transmissor.enrollment_failures (
    key           text PRIMARY KEY,
    window_start  timestamptz NOT NULL DEFAULT now(),
    failures      integer NOT NULL
);
CREATE INDEX enrollment_failures_window ON transmissor.enrollment_failures (window_start);
-- It replaces the row-per-attempt log, which a flood could grow without bound.
DROP TABLE transmissor.enrollment_attempts;

-- Retired issuing CAs: certificates they issued are refused at the handshake
-- and on every call, and agents learn of them with their next trust bundle.
CREATE TABLE transmissor.retired_cas (
    spki_sha256  bytea PRIMARY KEY,
    subject      text NOT NULL,
    cert_pem     text NOT NULL,
    retired_at   timestamptz NOT NULL DEFAULT now(),
    retired_by   text NOT NULL,
    reason       text NOT NULL DEFAULT ''
);
