-- Certificates renewed for agent $1 in the last $2 seconds.
SELECT count(*) FROM transmissor.certificates
WHERE agent_id = $1 AND reason = 'renew' AND issued_at > now() - make_interval(secs => $2)
