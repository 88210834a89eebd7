-- Everything the login role (`session_user`: a `SET role` in its settings
-- can be undone with RESET ROLE) could write: grants to it, to PUBLIC, or
-- to any role it reaches through memberships (with or without INHERIT:
-- SET ROLE reaches those too), and what it owns. Grants are read from the
-- objects' ACLs so each finding names the role holding the grant, and
-- `hop` the login role's own membership that leads there (what to revoke).
-- Columns: kind, grantee (NULL: PUBLIC), object, privilege, owner (whose
-- new objects default privileges cover; whom a SECURITY DEFINER routine
-- runs as; for what the role owns, the database owner to give it to),
-- hop (NULL: the login role itself or PUBLIC). Runs on PostgreSQL 9.6 to 18.
WITH RECURSIVE reach (oid, hop) AS (
    SELECT m.roleid, m.roleid
    FROM pg_auth_members m
    JOIN pg_roles s ON s.oid = m.member
    WHERE s.rolname = session_user
    UNION
    SELECT m.roleid, r.hop
    FROM pg_auth_members m
    JOIN reach r ON m.member = r.oid
),
me AS (
    SELECT r.oid, r.rolname::text AS rolname, NULL::text AS hop
    FROM pg_roles r
    WHERE r.rolname = session_user
    UNION ALL
    (SELECT DISTINCT ON (x.oid) x.oid, g.rolname::text, h.rolname::text
     FROM reach x
     JOIN pg_roles g ON g.oid = x.oid
     JOIN pg_roles h ON h.oid = x.hop
     ORDER BY x.oid, h.rolname)
),
dba AS (
    SELECT quote_ident(o.rolname) AS name
    FROM pg_database d
    JOIN pg_roles o ON o.oid = d.datdba
    WHERE d.datname = current_database()
),
relations AS (
    SELECT c.oid, c.relkind, c.relacl, c.relowner,
           quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'
),
routines AS (
    SELECT p.oid, p.proowner, p.proacl, p.prosecdef,
           CASE WHEN to_jsonb(p) ->> 'prokind' = 'p' THEN 'PROCEDURE '
                WHEN to_jsonb(p) ->> 'prokind' = 'a' OR to_jsonb(p) ->> 'proisagg' = 'true' THEN 'AGGREGATE '
                ELSE 'FUNCTION ' END
           || quote_ident(n.nspname) || '.' || quote_ident(p.proname)
           || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name
    FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'
)
-- Role attributes that write or create (database-wide or cluster-wide).
SELECT 'attribute' AS kind, me.rolname AS grantee, a.attr AS object, '' AS privilege,
       '' AS owner, me.hop AS hop
FROM me
JOIN pg_roles r ON r.oid = me.oid
CROSS JOIN LATERAL (VALUES
    ('superuser', r.rolsuper), ('createrole', r.rolcreaterole), ('createdb', r.rolcreatedb),
    ('replication', r.rolreplication), ('bypassrls', r.rolbypassrls)) AS a (attr, has)
WHERE a.has
UNION ALL
-- Predefined roles that write files, run programs, write or lock every table.
SELECT 'predefined_role', me.rolname, me.rolname, '', '', me.hop
FROM me
WHERE me.rolname IN ('pg_write_server_files', 'pg_execute_server_program', 'pg_write_all_data',
                     'pg_maintain')
UNION ALL
-- What it owns: the owner may grant itself anything on it, alter or drop it.
SELECT 'owner', me.rolname, o.object, '', (SELECT name FROM dba), me.hop
FROM (
    SELECT t.relowner AS owner,
           CASE t.relkind WHEN 'S' THEN 'SEQUENCE ' WHEN 'v' THEN 'VIEW '
                WHEN 'm' THEN 'MATERIALIZED VIEW ' WHEN 'f' THEN 'FOREIGN TABLE '
                ELSE 'TABLE ' END || t.name AS object
    FROM relations t
    UNION ALL
    SELECT n.nspowner, 'SCHEMA ' || quote_ident(n.nspname)
    FROM pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'
    UNION ALL
    SELECT d.datdba, 'DATABASE ' || quote_ident(d.datname)
    FROM pg_database d
    WHERE d.datname = current_database()
    UNION ALL
    SELECT f.proowner, f.name
    FROM routines f
) AS o
JOIN me ON me.oid = o.owner
UNION ALL
-- Tables, views and foreign tables: rows written, or triggers, foreign keys
-- and locks that could block the application's own writes; sequences:
-- nextval and setval change them.
SELECT CASE WHEN t.relkind = 'S' THEN 'sequence' ELSE 'table' END,
       g.rolname, t.name, a.privilege_type, '', g.hop
FROM relations t
CROSS JOIN LATERAL aclexplode(coalesce(
    t.relacl, acldefault(CASE WHEN t.relkind = 'S' THEN 's' ELSE 'r' END::"char", t.relowner))) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.grantee <> t.relowner
  AND CASE WHEN t.relkind = 'S' THEN a.privilege_type IN ('UPDATE', 'USAGE')
           ELSE a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER',
                                     'REFERENCES', 'MAINTAIN') END
UNION ALL
-- Column grants.
SELECT 'table', g.rolname, t.name, a.privilege_type, '', g.hop
FROM relations t
JOIN pg_attribute att ON att.attrelid = t.oid AND att.attacl IS NOT NULL AND NOT att.attisdropped
CROSS JOIN LATERAL aclexplode(att.attacl) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.privilege_type IN ('INSERT', 'UPDATE', 'REFERENCES')
UNION ALL
-- Schemas it may create objects in (before PostgreSQL 15 every role may
-- create in `public` unless that was revoked).
SELECT 'schema', g.rolname, quote_ident(n.nspname), a.privilege_type, '', g.hop
FROM pg_namespace n
CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n'::"char", n.nspowner))) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
  AND (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.grantee <> n.nspowner
  AND a.privilege_type = 'CREATE'
UNION ALL
-- The database: CREATE makes schemas.
SELECT 'database', g.rolname, quote_ident(d.datname), a.privilege_type, '', g.hop
FROM pg_database d
CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d'::"char", d.datdba))) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE d.datname = current_database()
  AND (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.grantee <> d.datdba
  AND a.privilege_type = 'CREATE'
UNION ALL
-- Default privileges: tables, sequences and schemas created later would be
-- writable.
SELECT CASE d.defaclobjtype WHEN 'r' THEN 'default_tables' WHEN 'S' THEN 'default_sequences'
            ELSE 'default_schemas' END,
       g.rolname, coalesce(quote_ident(n.nspname), ''), a.privilege_type, quote_ident(o.rolname),
       g.hop
FROM pg_default_acl d
JOIN pg_roles o ON o.oid = d.defaclrole
LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
CROSS JOIN LATERAL aclexplode(d.defaclacl) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE d.defaclobjtype IN ('r', 'S', 'n')
  AND (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER', 'REFERENCES',
                           'MAINTAIN', 'USAGE', 'CREATE')
  AND NOT (d.defaclobjtype = 'n' AND a.privilege_type = 'USAGE')
UNION ALL
-- Routines that run as another role (SECURITY DEFINER): whatever they do
-- with their owner's rights, this role can make them do.
SELECT 'security_definer', g.rolname, f.name, a.privilege_type, quote_ident(o.rolname), g.hop
FROM routines f
JOIN pg_roles o ON o.oid = f.proowner
CROSS JOIN LATERAL aclexplode(coalesce(f.proacl, acldefault('f'::"char", f.proowner))) AS a
LEFT JOIN me g ON g.oid = a.grantee
WHERE f.prosecdef
  AND (a.grantee = 0 OR g.oid IS NOT NULL)
  AND a.privilege_type = 'EXECUTE'
  AND NOT EXISTS (SELECT 1 FROM me WHERE me.oid = f.proowner)
ORDER BY 1, 3, 4, 2
