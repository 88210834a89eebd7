//! Issue #20, "nothing the tools print can be turned into SQL": the real
//! `transmissor-agent db-role` against a real PostgreSQL whose tables, role
//! and database have hostile names (a `"`, a backslash before a `"` that
//! would close a naively re-rendered identifier and append a `DROP TABLE`,
//! a newline followed by a `psql` meta-command, `$$`, `'`, non-ASCII,
//! mixed case). The printed script runs through `psql -v ON_ERROR_STOP=1`
//! as the superuser, as a DBA would paste it, with
//! `standard_conforming_strings` off; `--apply` runs with a password full
//! of quotes and backslashes. Each time exactly the expected statements
//! ran: the relations are the same before and after (the canary stands),
//! the role holds SELECT on exactly the plan's tables and no attribute
//! that writes, no shell command ran, and the password is the one given.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

use transmissor_tests::pg::{Cluster, ClusterOptions};
use transmissor_tests::procs;

/// The tables the plan reads, as PostgreSQL stores their names (schema,
/// table). `{pwned}` is replaced by a path that must never be created.
const TABLES: [(&str, &str); 8] = [
    ("public", "a\"b"),
    ("public", "a\\\"; DROP TABLE canary; --"),
    ("public", "x\\"),
    ("public", "linha\n\\! touch {pwned}\nfim"),
    ("public", "$$ DROP TABLE canary; $$"),
    ("public", "o'brien \\' ; DROP TABLE canary; --"),
    ("public", "Água Ção"),
    ("es\"q\\", "TbMixed"),
];

/// The login role of the agent (the `[source] user`) in each run.
const PRINTED_ROLE: &str = "leitor\"; ALTER ROLE postgres NOLOGIN; --\\";
const APPLIED_ROLE: &str = "aplicado\\\" $$ 'x";
/// The database (the `[source] dbname`).
const DATABASE: &str = "esus \"db\" \\ 'x";
/// The agent's password for `--apply`: quotes, backslashes, `$$`.
const PASSWORD: &str = "s\\'e\"n$$ha\\\\'; ALTER ROLE postgres NOLOGIN; --";

fn qi(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn ql(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn tables(pwned: &Path) -> Vec<(String, String)> {
    TABLES
        .iter()
        .map(|(s, t)| {
            (
                s.to_string(),
                t.replace("{pwned}", &pwned.display().to_string()),
            )
        })
        .collect()
}

/// The superuser's connection to `db` (any name: not through a URL).
async fn connect(cluster: &Cluster, db: &str) -> Result<tokio_postgres::Client> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&cluster.host)
        .port(cluster.port)
        .user("postgres")
        .dbname(db);
    let (client, conn) = pg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Sets the database up as the superuser: the schema and tables, a canary.
async fn prepare(cluster: &Cluster, pwned: &Path) -> Result<()> {
    let admin = cluster.connect("postgres").await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {}", qi(DATABASE)))
        .await?;
    let db = connect(cluster, DATABASE).await?;
    db.batch_execute(&format!(
        "CREATE ROLE pw_login NOLOGIN; CREATE SCHEMA {}; CREATE TABLE canary (id int); INSERT INTO canary VALUES (1); \
         CREATE TABLE tb_migracao (id int);",
        qi("es\"q\\")
    ))
    .await?;
    for (s, t) in tables(pwned) {
        db.batch_execute(&format!("CREATE TABLE {}.{} (id int)", qi(&s), qi(&t)))
            .await?;
    }
    // A DBA's server may still run with backslash escapes in plain strings.
    db.batch_execute(&format!(
        "ALTER DATABASE {} SET standard_conforming_strings = off",
        qi(DATABASE)
    ))
    .await?;
    Ok(())
}

/// The agent config: local jobs whose SQL reads every hostile table.
fn config(dir: &Path, cluster: &Cluster, role: &str, pwned: &Path) -> Result<PathBuf> {
    let password = dir.join(format!("{}.password", role.len()));
    std::fs::write(&password, PASSWORD)?;
    std::fs::set_permissions(
        &password,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    let toml_str = |s: &str| toml_basic(s);
    let mut s = format!(
        "version = 1\n\n[agent]\nstate_dir = {state}\n\n\
         [source]\nhost = \"127.0.0.1\"\nport = {port}\ndbname = {db}\nuser = {user}\n\
         password_file = {password}\n\n\
         [collector]\nendpoint = \"https://127.0.0.1:1\"\n\n",
        state = toml_str(&dir.join("state").display().to_string()),
        port = cluster.port,
        db = toml_str(DATABASE),
        user = toml_str(role),
        password = toml_str(&password.display().to_string()),
    );
    for (i, (schema, table)) in tables(pwned).iter().enumerate() {
        let from = if schema == "public" {
            qi(table)
        } else {
            format!("{}.{}", qi(schema), qi(table))
        };
        s.push_str(&format!(
            "[[jobs]]\nname = \"j{i}\"\nmode = \"snapshot\"\ntarget = \"t{i}\"\nquery = {}\n\n",
            toml_basic(&format!("SELECT id FROM {from}"))
        ));
    }
    let path = dir.join(format!("agent-{}.toml", role.len()));
    std::fs::write(&path, s)?;
    Ok(path)
}

/// A TOML basic string for any text.
fn toml_basic(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Every relation in the database (schema, name).
async fn relations(cluster: &Cluster) -> Result<BTreeSet<(String, String)>> {
    let db = connect(cluster, DATABASE).await?;
    Ok(db
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// What `role` may do: its table privileges (schema, table, privilege),
/// schema USAGE, and whether it has any attribute beyond LOGIN.
async fn privileges(
    cluster: &Cluster,
    role: &str,
) -> Result<(BTreeSet<(String, String, String)>, bool)> {
    let db = connect(cluster, DATABASE).await?;
    let grants = db
        .query(
            "SELECT n.nspname::text, c.relname::text, a.privilege_type::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL aclexplode(c.relacl) a \
             JOIN pg_roles r ON r.oid = a.grantee WHERE r.rolname = $1 \
             UNION ALL \
             SELECT n.nspname::text, '', a.privilege_type::text FROM pg_namespace n \
             CROSS JOIN LATERAL aclexplode(n.nspacl) a \
             JOIN pg_roles r ON r.oid = a.grantee WHERE r.rolname = $1",
            &[&role],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let row = db
        .query_one(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls, \
                    rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await?;
    let (powerful, login): (bool, bool) = (row.get(0), row.get(1));
    ensure!(login, "{role:?} cannot log in");
    Ok((grants, powerful))
}

fn expected(pwned: &Path) -> BTreeSet<(String, String, String)> {
    let mut e: BTreeSet<(String, String, String)> = tables(pwned)
        .into_iter()
        .map(|(s, t)| (s, t, "SELECT".to_string()))
        .collect();
    e.insert(("es\"q\\".into(), String::new(), "USAGE".into()));
    // PEC's migration log, which the agent reads for PEC's version.
    e.insert(("public".into(), "tb_migracao".into(), "SELECT".into()));
    e
}

/// The superuser still logs in (a statement appended to a name would have
/// turned it off) and the canary still stands.
async fn intact(cluster: &Cluster, before: &BTreeSet<(String, String)>) -> Result<()> {
    let db = connect(cluster, DATABASE).await?;
    let n: i64 = db
        .query_one("SELECT count(*) FROM canary", &[])
        .await?
        .get(0);
    ensure!(n == 1, "the canary changed");
    let postgres_login: bool = db
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'postgres'",
            &[],
        )
        .await?
        .get(0);
    ensure!(postgres_login, "a name became ALTER ROLE postgres NOLOGIN");
    let after = relations(cluster).await?;
    ensure!(
        &after == before,
        "relations changed: {before:?} -> {after:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_print_and_apply_exactly_the_grants() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pwned = dir.path().join("pwned");
    let cluster = Cluster::start_with(ClusterOptions {
        // Members of `pw_login` log in with their password.
        hba_first: vec!["host all +pw_login 127.0.0.1/32 scram-sha-256".to_string()],
        ..Default::default()
    })?;
    prepare(&cluster, &pwned).await?;
    let before = relations(&cluster).await?;

    // Printed, then pasted into psql by the DBA (the placeholder replaced).
    let cfg = config(dir.path(), &cluster, PRINTED_ROLE, &pwned)?;
    let out = Command::new(procs::bin("transmissor-agent")?)
        .args(["db-role", "--config"])
        .arg(&cfg)
        .output()?;
    let sql = String::from_utf8(out.stdout)?;
    ensure!(
        out.status.success(),
        "db-role: {sql}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sql = sql.replace("'<senha / password>'", &ql("x"));
    let mut psql = cluster
        .psql_command(DATABASE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    psql.stdin
        .take()
        .context("psql stdin")?
        .write_all(sql.as_bytes())?;
    let ran = psql.wait_with_output()?;
    ensure!(
        ran.status.success(),
        "psql refused the printed SQL:\n{sql}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    ensure!(!pwned.exists(), "a table name ran a psql meta-command");
    intact(&cluster, &before).await?;
    let (grants, powerful) = privileges(&cluster, PRINTED_ROLE).await?;
    assert_eq!(grants, expected(&pwned), "printed SQL:\n{sql}");
    assert!(!powerful);

    // Applied directly, with the password of the password file.
    let cfg = config(dir.path(), &cluster, APPLIED_ROLE, &pwned)?;
    let out = Command::new(procs::bin("transmissor-agent")?)
        .args(["db-role", "--apply", "--admin-user", "postgres", "--config"])
        .arg(&cfg)
        .env("TRANSMISSOR_ADMIN_PASSWORD", "unused-with-trust")
        .output()?;
    // (Its doctor run afterwards fails the collector checks: no collector.)
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        text.contains("created or adjusted") || text.contains("criado ou ajustado"),
        "{text}"
    );
    intact(&cluster, &before).await?;
    let (grants, powerful) = privileges(&cluster, APPLIED_ROLE).await?;
    assert_eq!(grants, expected(&pwned));
    assert!(!powerful);
    // The password is exactly the file's: the role logs in with it.
    connect(&cluster, DATABASE)
        .await?
        .batch_execute(&format!("GRANT pw_login TO {}", qi(APPLIED_ROLE)))
        .await?;
    let mut pg = tokio_postgres::Config::new();
    pg.host("127.0.0.1")
        .port(cluster.port)
        .dbname(DATABASE)
        .user(APPLIED_ROLE)
        .password(PASSWORD);
    let (client, conn) = pg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", qi("a\"b")), &[])
        .await?
        .get(0);
    assert_eq!(n, 0);
    Ok(())
}
