-- A target's columns, in the order they were added.
SELECT name, source_type, target_type, pseudonymised
FROM transmissor.target_columns
WHERE target = $1
ORDER BY position
