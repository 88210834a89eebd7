-- The run's snapshot, the server version, whether PEC's migration log is
-- there (its version decides which jobs of the plan apply), and the
-- snapshot's observation for upsert watermarks: the transaction's start
-- time in microseconds (fixed at BEGIN, before the snapshot is taken; rounded
-- down) and the snapshot's
-- xmin and xmax (64-bit transaction ids; see incremental.rs).
SELECT txid_current_snapshot()::text,
       current_setting('server_version_num')::int4,
       to_regclass('tb_migracao') IS NOT NULL,
       floor(extract(epoch FROM transaction_timestamp()) * 1000000)::int8,
       txid_snapshot_xmin(txid_current_snapshot()),
       txid_snapshot_xmax(txid_current_snapshot())
