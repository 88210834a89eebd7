-- Identity changes are announced on the channel `transmissor_identity`:
-- every collector replica keeps positive identity checks in memory and
-- clears them on each notification, so a revocation, a certificate
-- replaced or superseded, or an issuing CA retired takes effect on the
-- agent's next call, whichever replica serves it and whatever code path
-- (collector, CLI, plain SQL) made the change. Notifications are sent at
-- commit, once per transaction and payload.

CREATE FUNCTION transmissor.notify_identity() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('transmissor_identity', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

-- Only the columns authentication reads: heartbeats (written every second)
-- never clear the caches.
CREATE TRIGGER agents_identity_changed
    AFTER UPDATE OF id, ibge, revoked_at, cert_serial OR DELETE ON transmissor.agents
    FOR EACH ROW EXECUTE FUNCTION transmissor.notify_identity();
CREATE TRIGGER agents_identity_truncated
    AFTER TRUNCATE ON transmissor.agents
    FOR EACH STATEMENT EXECUTE FUNCTION transmissor.notify_identity();

CREATE TRIGGER certificates_identity_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON transmissor.certificates
    FOR EACH STATEMENT EXECUTE FUNCTION transmissor.notify_identity();

CREATE TRIGGER retired_cas_identity_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON transmissor.retired_cas
    FOR EACH STATEMENT EXECUTE FUNCTION transmissor.notify_identity();
