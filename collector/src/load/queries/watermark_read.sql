-- An upsert job's committed watermark and last reconciliation for one
-- municipality (none before its first commit).
SELECT watermark, reconciled_at FROM transmissor.watermarks WHERE ibge = $1 AND job = $2
