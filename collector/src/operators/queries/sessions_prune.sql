DELETE FROM transmissor.sessions
WHERE expires_at < now() OR last_seen_at < now() - $1 * interval '1 second'
