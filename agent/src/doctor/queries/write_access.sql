-- Everything the connected role could write: grants to it, to PUBLIC, or
-- to any role it is a member of (with or without INHERIT: SET ROLE reaches
-- those too), read from the objects' ACLs so each finding names the role
-- that holds the grant (ownership counts: acldefault spells it out). One
-- row per grant: kind, the grantee (`PUBLIC` for everyone), the object,
-- the privilege, and an owner where it matters (whose new objects default
-- privileges cover; whom a SECURITY DEFINER function runs as).
-- Runs on PostgreSQL 9.6 to 18.
WITH me AS (
    SELECT r.oid, r.rolname::text AS rolname
    FROM pg_roles r
    WHERE pg_has_role(current_user, r.oid, 'MEMBER')
),
relations AS (
    SELECT c.oid, c.relkind, c.relacl, c.relowner,
           quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'
)
-- Role attributes that write or create (database-wide or cluster-wide).
SELECT 'attribute' AS kind, me.rolname AS via, a.attr AS object, '' AS privilege, '' AS owner
FROM me
JOIN pg_roles r ON r.oid = me.oid
CROSS JOIN LATERAL (VALUES
    ('superuser', r.rolsuper), ('createrole', r.rolcreaterole), ('createdb', r.rolcreatedb),
    ('replication', r.rolreplication), ('bypassrls', r.rolbypassrls)) AS a(attr, has)
WHERE a.has
UNION ALL
-- Predefined roles that write files, run programs or write every table.
SELECT 'predefined_role', me.rolname, me.rolname, '', ''
FROM me
WHERE me.rolname IN ('pg_write_server_files', 'pg_execute_server_program', 'pg_write_all_data')
UNION ALL
-- Tables, views and foreign tables: rows written, or triggers and foreign
-- keys that could block the application's own writes; sequences: nextval
-- and setval change them.
SELECT CASE WHEN t.relkind = 'S' THEN 'sequence' ELSE 'table' END,
       coalesce(g.rolname, 'PUBLIC'), t.name, a.privilege_type, ''
FROM relations t
CROSS JOIN LATERAL aclexplode(coalesce(
    t.relacl, acldefault(CASE WHEN t.relkind = 'S' THEN 's' ELSE 'r' END::"char", t.relowner))) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE (a.grantee = 0 OR g.oid IS NOT NULL)
  AND CASE WHEN t.relkind = 'S' THEN a.privilege_type IN ('UPDATE', 'USAGE')
           ELSE a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER', 'REFERENCES') END
UNION ALL
-- Column grants.
SELECT 'table', coalesce(g.rolname, 'PUBLIC'), t.name, a.privilege_type, ''
FROM relations t
JOIN pg_attribute att ON att.attrelid = t.oid AND att.attacl IS NOT NULL AND NOT att.attisdropped
CROSS JOIN LATERAL aclexplode(att.attacl) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.privilege_type IN ('INSERT', 'UPDATE', 'REFERENCES')
UNION ALL
-- Schemas it may create objects in (before PostgreSQL 15 every role may
-- create in `public` unless that was revoked).
SELECT 'schema', coalesce(g.rolname, 'PUBLIC'), quote_ident(n.nspname), a.privilege_type, ''
FROM pg_namespace n
CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n'::"char", n.nspowner))) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
  AND (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.privilege_type = 'CREATE'
UNION ALL
-- The database: CREATE makes schemas.
SELECT 'database', coalesce(g.rolname, 'PUBLIC'), quote_ident(d.datname), a.privilege_type, ''
FROM pg_database d
CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d'::"char", d.datdba))) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE d.datname = current_database()
  AND (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.privilege_type = 'CREATE'
UNION ALL
-- Default privileges: tables and sequences created later would be writable.
SELECT CASE d.defaclobjtype WHEN 'r' THEN 'default_tables' ELSE 'default_sequences' END,
       coalesce(g.rolname, 'PUBLIC'), coalesce(quote_ident(n.nspname), ''),
       a.privilege_type, quote_ident(o.rolname)
FROM pg_default_acl d
JOIN pg_roles o ON o.oid = d.defaclrole
LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
CROSS JOIN LATERAL aclexplode(d.defaclacl) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE d.defaclobjtype IN ('r', 'S')
  AND (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER', 'REFERENCES', 'USAGE')
UNION ALL
-- Functions that run as another role (SECURITY DEFINER): whatever they do
-- with their owner's rights, this role can make them do.
SELECT 'security_definer', coalesce(g.rolname, 'PUBLIC'), p.oid::regprocedure::text,
       a.privilege_type, quote_ident(o.rolname)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_roles o ON o.oid = p.proowner
CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f'::"char", p.proowner))) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE p.prosecdef
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.privilege_type = 'EXECUTE'
  AND NOT pg_has_role(current_user, p.proowner, 'MEMBER')
ORDER BY 1, 3, 4, 2
