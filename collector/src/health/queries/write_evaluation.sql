-- Records the pass.
INSERT INTO transmissor.health_evaluations (one, evaluated_at, municipalities, transitions, duration_ms)
VALUES (true, $1, $2, $3, $4)
ON CONFLICT (one) DO UPDATE SET
    evaluated_at = excluded.evaluated_at, municipalities = excluded.municipalities,
    transitions = excluded.transitions, duration_ms = excluded.duration_ms
