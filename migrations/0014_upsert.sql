-- Incremental upsert jobs (issue #13).
--
-- An upsert target is hash-partitioned by `_ibge` like a snapshot target,
-- with a unique index on (`_ibge`, key columns): a commit merges the
-- transmission's rows by key into the municipality's slice. Each job's
-- committed watermark per municipality lives in `watermarks`, written in
-- the same database transaction as the rows it covers, and only moves
-- forward.

ALTER TABLE transmissor.targets DROP CONSTRAINT targets_mode_check;
ALTER TABLE transmissor.targets
    ADD CONSTRAINT targets_mode_check CHECK (mode IN ('snapshot', 'append', 'upsert'));
ALTER TABLE transmissor.targets ADD COLUMN key text[];
COMMENT ON COLUMN transmissor.targets.key IS
    'upsert targets: the key columns (unique per municipality with _ibge)';

ALTER TABLE transmissor.transmissions DROP CONSTRAINT transmissions_mode_check;
ALTER TABLE transmissor.transmissions
    ADD CONSTRAINT transmissions_mode_check CHECK (mode IN ('snapshot', 'append', 'upsert'));
-- Upsert transmissions: key, watermark column, the snapshot's time and the
-- watermark it proves (from Begin); whether it was full and the lower bound
-- it read from, and what the merge did (from Commit).
ALTER TABLE transmissor.transmissions
    ADD COLUMN upsert_key       text[],
    ADD COLUMN watermark_column text,
    ADD COLUMN snapshot_at      timestamptz,
    ADD COLUMN proves_watermark timestamptz,
    ADD COLUMN full_extract     boolean,
    ADD COLUMN since            timestamptz,
    ADD COLUMN updated_rows     bigint,
    ADD COLUMN deleted_rows     bigint;

CREATE TABLE transmissor.watermarks (
    ibge            char(7) NOT NULL REFERENCES transmissor.municipalities (ibge),
    job             text NOT NULL,
    target          text NOT NULL REFERENCES transmissor.targets (name),
    -- NULL until a committed snapshot proves one.
    watermark       timestamptz,
    -- The newest committed snapshot of the job: an older one is superseded.
    snapshot_at     timestamptz NOT NULL,
    -- The snapshot of the last full commit (deletes reconciled).
    reconciled_at   timestamptz,
    transmission_id bigint NOT NULL REFERENCES transmissor.transmissions (id),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ibge, job)
);
