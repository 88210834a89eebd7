INSERT INTO transmissor.target_slices (target, ibge) VALUES ($1, $2)
ON CONFLICT (target, ibge) DO NOTHING
