-- The national layout (issue #8).
--
-- Snapshot targets were list-partitioned by `_ibge`, one partition per
-- municipality: at 5,570 municipalities an analyst's `SELECT count(*)` ran
-- out of lock table, and replacing a slice (DETACH + DROP) took an ACCESS
-- EXCLUSIVE lock that queued every reader behind a long report. They become
-- hash-partitioned by `_ibge` into a small fixed number of partitions, and a
-- snapshot commit replaces the municipality's rows with DELETE + INSERT in
-- one transaction (row locks only; readers never wait).
--
-- The target's column list moves to `target_columns` (one row per column,
-- with the transmission that brought it), and `target_slices` keeps, per
-- target and municipality, its last committed transmission and the columns
-- it sends: the lock that serialises commits of one municipality, and the
-- record that shows PEC-version drift.

ALTER TABLE transmissor.targets
    ADD COLUMN partitions integer NOT NULL DEFAULT 0 CHECK (partitions >= 0);
COMMENT ON COLUMN transmissor.targets.partitions IS
    'hash partitions by _ibge (snapshot targets); 0 for a plain table (append targets)';

CREATE TABLE transmissor.target_columns (
    target      text NOT NULL REFERENCES transmissor.targets (name),
    position    integer NOT NULL,
    name        text NOT NULL,
    target_type text NOT NULL,
    source_type text NOT NULL,
    -- The transmission whose Begin added the column (NULL: created before
    -- this was recorded).
    added_by    bigint REFERENCES transmissor.transmissions (id),
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, name),
    UNIQUE (target, position)
);

CREATE TABLE transmissor.target_slices (
    target          text NOT NULL REFERENCES transmissor.targets (name),
    ibge            char(7) NOT NULL REFERENCES transmissor.municipalities (ibge),
    -- Last committed transmission of this municipality into the target.
    transmission_id bigint REFERENCES transmissor.transmissions (id),
    -- The columns that transmission sent (its PEC version's column set).
    columns         jsonb NOT NULL DEFAULT '[]',
    committed_at    timestamptz,
    PRIMARY KEY (target, ibge)
);

INSERT INTO transmissor.target_columns (target, position, name, target_type, source_type, added_by, added_at)
SELECT t.name, c.ord::integer, c.col->>'name', c.col->>'target_type', c.col->>'source_type',
       (SELECT min(x.id) FROM transmissor.transmissions x WHERE x.target = t.name),
       t.created_at
FROM transmissor.targets t, jsonb_array_elements(t.columns) WITH ORDINALITY AS c (col, ord);

INSERT INTO transmissor.target_slices (target, ibge, transmission_id, columns, committed_at)
SELECT DISTINCT ON (x.target, x.ibge) x.target, x.ibge, x.id, x.columns, x.finished_at
FROM transmissor.transmissions x JOIN transmissor.targets t ON t.name = x.target
WHERE x.state = 'committed'
ORDER BY x.target, x.ibge, x.finished_at DESC, x.id DESC;

ALTER TABLE transmissor.targets DROP COLUMN columns;

-- Rebuild every list-partitioned snapshot target as 16 hash partitions,
-- keeping its rows and its grants. This takes an ACCESS EXCLUSIVE lock on
-- each target for the time of one copy of its rows: run the migration in a
-- maintenance window. A view analysts made on a target blocks the drop of
-- the old table; the migration then fails, changing nothing, and says which.
DO $migrate$
DECLARE
    t       record;
    grant_  record;
    old     text;
    parts   constant integer := 16;
    i       integer;
BEGIN
    FOR t IN
        SELECT c.oid, n.nspname AS schema, c.relname AS name
        FROM pg_partitioned_table p
        JOIN pg_class c ON c.oid = p.partrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN transmissor.targets tg ON tg.name = c.relname AND tg.mode = 'snapshot'
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0]
        WHERE p.partstrat = 'l' AND a.attname = '_ibge'
    LOOP
        old := left(t.name, 50) || '__list_old';
        EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', t.schema, t.name, old);
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS) PARTITION BY HASH (_ibge)',
                       t.schema, t.name, t.schema, old);
        FOR i IN 0 .. parts - 1 LOOP
            EXECUTE format(
                'CREATE TABLE transmissor_parts.%I PARTITION OF %I.%I '
                'FOR VALUES WITH (MODULUS %s, REMAINDER %s) '
                'WITH (autovacuum_vacuum_scale_factor = 0.1, autovacuum_analyze_scale_factor = 0.05)',
                left(t.name, 58) || '_p' || lpad(i::text, 3, '0'), t.schema, t.name, parts, i);
        END LOOP;
        EXECUTE format('CREATE INDEX ON %I.%I (_ibge)', t.schema, t.name);
        EXECUTE format('INSERT INTO %I.%I SELECT * FROM %I.%I', t.schema, t.name, t.schema, old);
        FOR grant_ IN
            SELECT a.grantee, a.privilege_type, a.is_grantable
            FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = t.oid AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('GRANT %s ON %I.%I TO %s%s', grant_.privilege_type, t.schema, t.name,
                           CASE WHEN grant_.grantee = 0 THEN 'PUBLIC'
                                ELSE quote_ident(pg_get_userbyid(grant_.grantee)) END,
                           CASE WHEN grant_.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        EXECUTE format('DROP TABLE %I.%I', t.schema, old);
        UPDATE transmissor.targets SET partitions = parts WHERE name = t.name;
        RAISE NOTICE 'target %.% now has % hash partitions by _ibge', t.schema, t.name, parts;
    END LOOP;
END
$migrate$;
