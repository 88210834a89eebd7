-- A target's mode, partition count and (upsert) key, if it is registered.
SELECT mode, partitions, key FROM transmissor.targets WHERE name = $1
