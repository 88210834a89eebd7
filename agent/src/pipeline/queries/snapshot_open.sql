-- The run's snapshot, the server version, and whether PEC's migration log
-- is there (its version decides which jobs of the plan apply).
SELECT txid_current_snapshot()::text,
       current_setting('server_version_num')::int4,
       to_regclass('tb_migracao') IS NOT NULL
