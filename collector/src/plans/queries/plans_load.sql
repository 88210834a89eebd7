-- Every published plan, newest first (the cache keeps them all: a plan is
-- a few kilobytes, and an agent may still run an older one for a while),
-- with the scope recorded at publication: it decides whom a plan is served
-- to (agents check the scope inside the signed plan again).
SELECT version, envelope, scope_all, scope_ibge FROM transmissor.plans ORDER BY version DESC
