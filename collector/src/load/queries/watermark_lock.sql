-- The newest committed snapshot of an upsert job for one municipality,
-- locked until the commit ends (the slice lock already serialises commits
-- of the municipality into the target; this row is the job's).
SELECT snapshot_at FROM transmissor.watermarks WHERE ibge = $1 AND job = $2 FOR UPDATE
