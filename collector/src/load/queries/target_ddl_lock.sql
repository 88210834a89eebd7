-- One schema change (create or add columns) at a time per target.
SELECT pg_advisory_xact_lock(hashtext('transmissor.target:' || $1))
