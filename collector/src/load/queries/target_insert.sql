-- Registers a new target (its table is created in the same transaction).
INSERT INTO transmissor.targets (name, mode, partitions) VALUES ($1, $2, $3)
