-- Before a batch is decompressed: whose transmission it is, its state,
-- whether this batch is held already, and the raw bytes its agent holds
-- staged in all its open transmissions.
SELECT t.agent_id,
       t.state,
       EXISTS (SELECT 1 FROM transmissor.batches h
                WHERE h.transmission_id = t.id AND h.seq = $2) AS held,
       (SELECT coalesce(sum(b.raw_bytes), 0)::bigint
          FROM transmissor.transmissions o
          JOIN transmissor.batches b ON b.transmission_id = o.id
         WHERE o.agent_id = t.agent_id AND o.state = 'open') AS staged
  FROM transmissor.transmissions t
 WHERE t.id = $1
