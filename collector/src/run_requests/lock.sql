-- One run request at a time per municipality (until the transaction ends).
SELECT pg_advisory_xact_lock(hashtext('transmissor.run_request:' || $1))
