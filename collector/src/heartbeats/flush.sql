-- Writes the latest heartbeat of many agents in one statement.
UPDATE transmissor.agents a
SET heartbeat_at = v.at, last_seen_at = v.at, agent_version = v.version, os = v.os,
    cert_not_after = v.not_after, clock_offset_ms = v.off, spool_used_bytes = v.used,
    spool_limit_bytes = v.lim, last_runs = v.runs::jsonb, warning = v.warning,
    pec_version = v.pec, job_source = v.source, plan_version = v.plan, plan_expired = v.expired,
    plan_refusal = v.refusal, key_list_serial = v.keys, next_runs = v.next_runs::jsonb,
    doctor = COALESCE(v.doctor::jsonb, a.doctor)
FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::timestamptz[], $6::int8[],
            $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[],
            $14::bool[], $15::text[], $16::int8[], $17::text[], $18::text[])
     AS v(id, at, version, os, not_after, off, used, lim, runs, warning, pec, source, plan, expired,
          refusal, keys, next_runs, doctor)
WHERE a.id = v.id
