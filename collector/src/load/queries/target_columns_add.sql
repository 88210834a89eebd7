-- Records columns added to a target by transmission $2, after the existing
-- ones; $3..$6 are parallel arrays (name, source type, target type,
-- pseudonymised).
INSERT INTO transmissor.target_columns (target, position, name, source_type, target_type, pseudonymised, added_by)
SELECT $1,
       coalesce((SELECT max(position) FROM transmissor.target_columns WHERE target = $1), 0) + c.ord,
       c.name, c.source_type, c.target_type, c.pseudonymised, $2
FROM unnest($3::text[], $4::text[], $5::text[], $6::boolean[])
     WITH ORDINALITY AS c (name, source_type, target_type, pseudonymised, ord)
