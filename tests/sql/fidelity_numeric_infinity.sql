-- numeric's infinities exist from PostgreSQL 14 on (rows 2 and 3 keep a
-- NULL there on older servers).
UPDATE fidelity SET c_numeric = 'Infinity' WHERE id = 2;
UPDATE fidelity SET c_numeric = '-Infinity' WHERE id = 3;
