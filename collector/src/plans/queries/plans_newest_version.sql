-- The highest published plan version (read under the table lock taken
-- before it, so two publications cannot both pass the step check).
SELECT max(version) FROM transmissor.plans
