-- An upsert job's lower bound (a UTC instant) and the municipality's time
-- zone (for a `timestamp without time zone` watermark), bound as
-- parameters and local to the run's transaction: the job's query reads
-- them with current_setting().
SELECT set_config('transmissor.since', $1, true), set_config('transmissor.zone', $2, true)
