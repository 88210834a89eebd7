-- People who use the dashboard and the API (issue #11), with a role each,
-- and their sessions. Passwords are Argon2id PHC strings; a session is
-- known by the SHA-256 of its random token (the token itself is only in
-- the operator's cookie), and carries its own CSRF token.
CREATE TABLE transmissor.operators (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9._-]{1,62}$'),
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    disabled_at   timestamptz
);

CREATE TABLE transmissor.sessions (
    token_sha256  bytea PRIMARY KEY,
    operator_id   bigint NOT NULL REFERENCES transmissor.operators (id),
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    source_addr   text
);
CREATE INDEX sessions_operator ON transmissor.sessions (operator_id);
CREATE INDEX sessions_expires ON transmissor.sessions (expires_at);
