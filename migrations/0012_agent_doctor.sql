-- The last `transmissor-agent doctor` summary an agent reported in a
-- heartbeat: {ran_at, worst, passed, warnings, failures, problems[{check,
-- outcome, code}]}. Kept until a newer one arrives.
ALTER TABLE transmissor.agents ADD COLUMN doctor jsonb;
