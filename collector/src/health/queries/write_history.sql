-- Appends the transitions of one pass.
INSERT INTO transmissor.health_history (ibge, at, axis, from_state, to_state, reason, reason_pt_br)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::text[])
