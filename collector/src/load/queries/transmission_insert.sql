-- Records a transmission (open, or failed when its schema was refused).
-- (agent, run, job) is unique: a concurrent Begin of the same job finds
-- nothing returned and reads the winner's row.
INSERT INTO transmissor.transmissions
    (ibge, agent_id, run_id, job, mode, target, plan_version, columns, source_snapshot,
     source_server_version, agent_version, state, error, finished_at, copy_format,
     upsert_key, watermark_column, snapshot_at, proves_watermark)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
        CASE WHEN $12 = 'open' THEN NULL ELSE now() END, $14, $15, $16, $17, $18)
ON CONFLICT (agent_id, run_id, job) DO NOTHING
RETURNING id
