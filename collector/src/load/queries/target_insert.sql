-- Registers a new target (its table is created in the same transaction);
-- $4: the key of an upsert target, NULL otherwise.
INSERT INTO transmissor.targets (name, mode, partitions, key) VALUES ($1, $2, $3, $4)
