-- Counts one failed attempt against key $1, unless $2 were already counted
-- in the current window of $3 seconds (a window that ended starts afresh).
-- One statement: the row lock makes check-and-count atomic across
-- concurrent attempts and replicas. Returns a row only when it counted.
INSERT INTO transmissor.enrollment_failures AS f (key, window_start, failures)
VALUES ($1, now(), 1)
ON CONFLICT (key) DO UPDATE SET
    failures = CASE WHEN f.window_start > now() - make_interval(secs => $3)
                    THEN f.failures + 1 ELSE 1 END,
    window_start = CASE WHEN f.window_start > now() - make_interval(secs => $3)
                        THEN f.window_start ELSE now() END
WHERE f.window_start <= now() - make_interval(secs => $3) OR f.failures < $2
RETURNING failures
