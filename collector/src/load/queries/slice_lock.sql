-- Locks (creating it if needed) the row of one municipality in one target:
-- commits of the same municipality into the same target queue here, those
-- of other municipalities never do. Run after slice_ensure.sql.
SELECT transmission_id FROM transmissor.target_slices
WHERE target = $1 AND ibge = $2::bpchar
FOR UPDATE
