-- Records columns added to a target by transmission $2, after the existing
-- ones; $3..$5 are parallel arrays (name, source type, target type).
INSERT INTO transmissor.target_columns (target, position, name, source_type, target_type, added_by)
SELECT $1,
       coalesce((SELECT max(position) FROM transmissor.target_columns WHERE target = $1), 0) + c.ord,
       c.name, c.source_type, c.target_type, $2
FROM unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS c (name, source_type, target_type, ord)
