-- Per municipality and target, the target's columns that the
-- municipality's last committed transmission did not send.
SELECT s.ibge::text AS ibge, s.target, array_agg(c.name ORDER BY c.position) AS lacks
FROM transmissor.target_slices s
JOIN transmissor.target_columns c ON c.target = s.target
WHERE NOT s.columns @> jsonb_build_array(jsonb_build_object('name', c.name))
GROUP BY s.ibge, s.target
