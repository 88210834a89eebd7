-- The stored state of every municipality (read under the evaluator's lock).
SELECT ibge::text AS ibge, connectivity, data, health, overall, reasons, since,
       last_success, last_rows, daily_rows, jobs
FROM transmissor.municipality_health
