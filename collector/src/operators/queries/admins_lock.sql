-- Serialises changes that could leave no enabled admin (two admins
-- disabling each other at once must not both succeed).
SELECT pg_advisory_xact_lock(hashtext('transmissor.operators.admins'))
