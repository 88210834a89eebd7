-- The municipality's last committed transmission and the columns it sent.
UPDATE transmissor.target_slices
SET transmission_id = $3, columns = $4, committed_at = now()
WHERE target = $1 AND ibge = $2::bpchar
