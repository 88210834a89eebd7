-- Every published plan, newest first (the cache keeps them all: a plan is
-- a few kilobytes, and an agent may still run an older one for a while).
SELECT version, envelope FROM transmissor.plans ORDER BY version DESC
