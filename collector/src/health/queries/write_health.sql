-- Writes the rows that changed, in one statement.
INSERT INTO transmissor.municipality_health
    (ibge, connectivity, data, health, overall, reasons, since, changed_at,
     last_success, last_rows, daily_rows, jobs)
SELECT v.ibge, v.connectivity, v.data, v.health, v.overall, v.reasons::jsonb, v.since, v.changed_at,
       v.last_success, v.last_rows, v.daily_rows::bigint[], v.jobs::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::int8[], $11::text[],
            $12::text[])
     AS v(ibge, connectivity, data, health, overall, reasons, since, changed_at, last_success,
          last_rows, daily_rows, jobs)
ON CONFLICT (ibge) DO UPDATE SET
    connectivity = excluded.connectivity, data = excluded.data, health = excluded.health,
    overall = excluded.overall, reasons = excluded.reasons, since = excluded.since,
    changed_at = excluded.changed_at, last_success = excluded.last_success,
    last_rows = excluded.last_rows, daily_rows = excluded.daily_rows, jobs = excluded.jobs
