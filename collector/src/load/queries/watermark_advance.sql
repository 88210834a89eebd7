-- Records a committed upsert transmission: the watermark and the newest
-- snapshot only move forward (GREATEST ignores NULL), so a replayed or
-- resumed transmission never moves them backwards.
INSERT INTO transmissor.watermarks AS w
    (ibge, job, target, watermark, snapshot_at, reconciled_at, transmission_id)
VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN $5 END, $7)
ON CONFLICT (ibge, job) DO UPDATE SET
    target          = EXCLUDED.target,
    watermark       = GREATEST(w.watermark, EXCLUDED.watermark),
    snapshot_at     = GREATEST(w.snapshot_at, EXCLUDED.snapshot_at),
    reconciled_at   = GREATEST(w.reconciled_at, EXCLUDED.reconciled_at),
    transmission_id = EXCLUDED.transmission_id,
    updated_at      = now()
