-- Enrollment with one-time tokens, issued certificates, heartbeats and the
-- append-only audit log.

CREATE TABLE transmissor.enrollment_tokens (
    id              text PRIMARY KEY,
    ibge            char(7) NOT NULL REFERENCES transmissor.municipalities (ibge),
    -- SHA-256 of the secret; the secret itself is never stored.
    secret_sha256   bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    issued_by       text NOT NULL,
    consumed_at     timestamptz,
    consumed_by     uuid REFERENCES transmissor.agents (id),
    consumed_from   text,
    expiry_audited  boolean NOT NULL DEFAULT false
);

-- Every enrollment attempt, for rate limiting per address and municipality.
CREATE TABLE transmissor.enrollment_attempts (
    at           timestamptz NOT NULL DEFAULT now(),
    source_addr  text NOT NULL,
    ibge         char(7),
    ok           boolean NOT NULL
);
CREATE INDEX enrollment_attempts_addr ON transmissor.enrollment_attempts (source_addr, at);
CREATE INDEX enrollment_attempts_ibge ON transmissor.enrollment_attempts (ibge, at);

CREATE TABLE transmissor.certificates (
    serial      text PRIMARY KEY,
    agent_id    uuid NOT NULL REFERENCES transmissor.agents (id),
    not_before  timestamptz NOT NULL,
    not_after   timestamptz NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL CHECK (reason IN ('enroll', 'renew'))
);
CREATE INDEX certificates_agent ON transmissor.certificates (agent_id, issued_at DESC);

-- The latest state each agent reported (heartbeats; written in batches).
ALTER TABLE transmissor.agents
    ADD COLUMN hostname          text,
    ADD COLUMN enrolled_from     text,
    ADD COLUMN agent_version     text,
    ADD COLUMN os                text,
    ADD COLUMN cert_not_after    timestamptz,
    ADD COLUMN clock_offset_ms   bigint,
    ADD COLUMN spool_used_bytes  bigint,
    ADD COLUMN spool_limit_bytes bigint,
    ADD COLUMN last_runs         jsonb,
    ADD COLUMN warning           text,
    ADD COLUMN heartbeat_at      timestamptz;

CREATE TABLE transmissor.audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    -- 'operator:<os user>' or 'agent:<agent id>' or 'collector'
    actor        text NOT NULL,
    action       text NOT NULL,
    ibge         char(7),
    agent_id     uuid,
    source_addr  text,
    detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON transmissor.audit_log (at DESC);

CREATE FUNCTION transmissor.audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transmissor.audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON transmissor.audit_log
    FOR EACH ROW EXECUTE PROCEDURE transmissor.audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON transmissor.audit_log
    FOR EACH STATEMENT EXECUTE PROCEDURE transmissor.audit_log_append_only();
