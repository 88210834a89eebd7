-- PEC's Liquibase log: the PEC version is the newest 'db/v<version>/'
-- entry. Only run when tb_migracao exists (to_regclass, 9.4+).
SELECT DISTINCT substring(filename from '^db/v([0-9][0-9.]*)/')
FROM tb_migracao
WHERE filename LIKE 'db/v%'
