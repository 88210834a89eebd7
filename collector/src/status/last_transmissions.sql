-- The last transmission of every municipality and job, with the target's
-- columns that the municipality's current slice lacks (PEC-version drift)
-- and the ones it sends that other municipalities' rows lack.
SELECT DISTINCT ON (t.ibge, t.job)
       t.ibge::text AS ibge, m.name AS municipality, t.job, t.target, t.id AS transmission_id,
       t.state, t.rows, t.raw_bytes, t.compressed_bytes, t.batches, t.started_at, t.finished_at,
       t.error,
       coalesce((SELECT array_agg(c.name ORDER BY c.position)
                 FROM transmissor.target_columns c
                 WHERE c.target = s.target
                   AND NOT s.columns @> jsonb_build_array(jsonb_build_object('name', c.name))),
                '{}') AS missing_columns,
       coalesce(jsonb_array_length(s.columns), 0) AS slice_columns
FROM transmissor.transmissions t
JOIN transmissor.municipalities m USING (ibge)
LEFT JOIN transmissor.target_slices s ON s.target = t.target AND s.ibge = t.ibge
ORDER BY t.ibge, t.job, t.started_at DESC, t.id DESC
