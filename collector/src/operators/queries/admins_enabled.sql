-- Enabled admins (read inside the disabling transaction, after its update).
SELECT count(*) FROM transmissor.operators WHERE role = 'admin' AND disabled_at IS NULL
