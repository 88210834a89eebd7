-- A target's mode and partition count, if it is registered.
SELECT mode, partitions FROM transmissor.targets WHERE name = $1
