-- Every published plan-key list, oldest first (the chain order).
SELECT serial, envelope FROM transmissor.plan_key_lists ORDER BY serial
