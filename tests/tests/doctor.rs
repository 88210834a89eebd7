//! Issue #12, the doctor's database check: the agent's role must not be able
//! to write anything. Real roles on real servers — the oldest embedded
//! PostgreSQL (10, where every role may create in `public`), the system's,
//! and 18 — each asked what it could write:
//!
//! - a correct read-only role (SELECT on the tables, `public` closed): none;
//! - a superuser, also one whose settings `SET role` to a reader; a role
//!   with INSERT on one table; with UPDATE on one column; a member of a
//!   writing role, with INHERIT and without (SET ROLE reaches it), and
//!   through a role in between; the owner of a table; CREATE on a schema;
//!   default privileges that make the next tables writable; a grant to
//!   PUBLIC; a sequence; a SECURITY DEFINER function (a warning) — each
//!   found, named, and the SQL it prints to fix it, once run, leaves the
//!   role with nothing.

use anyhow::{Context, Result};

use transmissor_agent::doctor::sql_name::{Ident, TableName};
use transmissor_agent::doctor::write_access::{self, Finding, Grantee, Kind};
use transmissor_tests::pg::{Cluster, ClusterOptions, PgServer};

async fn connect_as(cluster: &Cluster, role: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={role} dbname=esus",
            cluster.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .with_context(|| format!("connect as {role}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn findings(cluster: &Cluster, role: &str) -> Result<Vec<Finding>> {
    Ok(write_access::check(&connect_as(cluster, role).await?).await?)
}

fn one<'a>(f: &'a [Finding], kind: Kind, object: &str) -> &'a Finding {
    f.iter()
        .find(|x| x.kind == kind && x.object == object)
        .unwrap_or_else(|| panic!("no {kind:?} finding for {object}: {f:#?}"))
}

async fn roles_on(server: PgServer) -> Result<()> {
    let cluster = Cluster::start_with(ClusterOptions {
        server: server.clone(),
        ..Default::default()
    })?;
    cluster.create_db("esus").await?;
    let admin = cluster.connect("esus").await?;
    let version = transmissor_tests::pg::server_version_num(&admin).await?;
    admin
        .batch_execute(
            "CREATE SCHEMA pec;
             CREATE TABLE pec.tb_cidadao (id int PRIMARY KEY, no_cidadao text);
             CREATE TABLE pec.tb_atend (id int PRIMARY KEY);
             CREATE SEQUENCE pec.seq_x;
             CREATE ROLE escritor NOLOGIN;
             GRANT USAGE ON SCHEMA pec TO escritor;
             GRANT INSERT, DELETE ON pec.tb_atend TO escritor;
             CREATE ROLE leitor LOGIN;
             CREATE ROLE admin_total LOGIN SUPERUSER;
             CREATE ROLE com_insert LOGIN;
             CREATE ROLE com_coluna LOGIN;
             CREATE ROLE membro LOGIN IN ROLE escritor;
             CREATE ROLE membro_sem_heranca LOGIN NOINHERIT IN ROLE escritor;
             CREATE ROLE cria_schema LOGIN;
             CREATE ROLE com_default LOGIN;
             CREATE ROLE com_sequencia LOGIN;
             CREATE ROLE chama_funcao LOGIN;
             CREATE ROLE meio NOLOGIN IN ROLE escritor;
             CREATE ROLE neto LOGIN IN ROLE meio;
             CREATE ROLE dono LOGIN;
             CREATE TABLE pec.tb_dono (id int);
             ALTER TABLE pec.tb_dono OWNER TO dono;
             CREATE ROLE disfarcado LOGIN SUPERUSER;
             ALTER ROLE disfarcado SET role = leitor;
             REVOKE CREATE ON SCHEMA public FROM PUBLIC;
             GRANT USAGE ON SCHEMA pec TO leitor, com_insert, com_coluna, membro,
                 membro_sem_heranca, cria_schema, com_default, com_sequencia, chama_funcao,
                 neto, dono;
             GRANT SELECT ON ALL TABLES IN SCHEMA pec TO leitor, com_insert, com_coluna, membro,
                 membro_sem_heranca, cria_schema, com_default, com_sequencia, chama_funcao;
             GRANT INSERT ON pec.tb_cidadao TO com_insert;
             GRANT UPDATE (no_cidadao) ON pec.tb_cidadao TO com_coluna;
             GRANT CREATE ON SCHEMA pec TO cria_schema;
             ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA pec GRANT INSERT ON TABLES TO com_default;
             GRANT USAGE ON SEQUENCE pec.seq_x TO com_sequencia;
             CREATE FUNCTION pec.limpa() RETURNS void LANGUAGE sql SECURITY DEFINER
                 AS 'DELETE FROM pec.tb_atend';
             REVOKE EXECUTE ON FUNCTION pec.limpa() FROM PUBLIC;
             GRANT EXECUTE ON FUNCTION pec.limpa() TO chama_funcao;",
        )
        .await?;

    // Read-only: nothing (SECURITY DEFINER functions of PUBLIC aside: none here).
    let ok = findings(&cluster, "leitor").await?;
    assert!(ok.is_empty(), "{server}: {ok:#?}");

    // A `SET role` in its settings does not hide a superuser.
    let f = findings(&cluster, "disfarcado").await?;
    one(&f, Kind::Attribute, "superuser");

    let f = findings(&cluster, "admin_total").await?;
    let su = one(&f, Kind::Attribute, "superuser");
    assert_eq!(
        su.fix("admin_total"),
        r#"ALTER ROLE "admin_total" NOSUPERUSER;"#
    );
    assert_eq!(f.len(), 1, "a superuser is one finding: {f:#?}");

    let f = findings(&cluster, "com_insert").await?;
    let t = one(&f, Kind::Table, "pec.tb_cidadao");
    assert_eq!(t.privileges, vec!["INSERT"]);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        t.fix("com_insert"),
        r#"REVOKE INSERT ON pec.tb_cidadao FROM "com_insert";"#
    );

    let f = findings(&cluster, "com_coluna").await?;
    assert_eq!(
        one(&f, Kind::Table, "pec.tb_cidadao").privileges,
        vec!["UPDATE"]
    );

    for role in ["membro", "membro_sem_heranca"] {
        let f = findings(&cluster, role).await?;
        let t = one(&f, Kind::Table, "pec.tb_atend");
        assert_eq!(
            t.via,
            vec![Grantee::Role("escritor".into())],
            "{server} {role}"
        );
        assert_eq!(t.privileges, vec!["DELETE", "INSERT"], "{server} {role}");
        assert_eq!(t.fix(role), format!(r#"REVOKE "escritor" FROM "{role}";"#));
    }

    // Through a role in between: the login role's own membership is cut.
    let f = findings(&cluster, "neto").await?;
    assert_eq!(
        one(&f, Kind::Table, "pec.tb_atend").fix("neto"),
        r#"REVOKE "meio" FROM "neto";"#
    );

    let f = findings(&cluster, "dono").await?;
    assert_eq!(
        one(&f, Kind::Owner, "TABLE pec.tb_dono").fix("dono"),
        "ALTER TABLE pec.tb_dono OWNER TO postgres;"
    );
    assert_eq!(f.len(), 1, "ownership is one finding: {f:#?}");

    let f = findings(&cluster, "cria_schema").await?;
    assert_eq!(
        one(&f, Kind::Schema, "pec").fix("cria_schema"),
        r#"REVOKE CREATE ON SCHEMA pec FROM "cria_schema";"#
    );

    let f = findings(&cluster, "com_default").await?;
    let d = one(&f, Kind::DefaultTables, "pec");
    assert_eq!(
        d.fix("com_default"),
        r#"ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA pec REVOKE INSERT ON TABLES FROM "com_default";"#
    );

    let f = findings(&cluster, "com_sequencia").await?;
    one(&f, Kind::Sequence, "pec.seq_x");

    let f = findings(&cluster, "chama_funcao").await?;
    let s = one(&f, Kind::SecurityDefiner, "FUNCTION pec.limpa()");
    assert!(s.is_warning() && s.owner == "postgres", "{s:?}");

    // Where PUBLIC may create in `public` (the default before 15), every
    // role is told, with the fix for PUBLIC too.
    admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        .await?;
    let f = findings(&cluster, "leitor").await?;
    let p = one(&f, Kind::Schema, "public");
    assert_eq!(
        p.fix("leitor"),
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
    );

    // Every fix, run by the administrator, leaves each role with nothing
    // (the warning about the function aside).
    for role in [
        "leitor",
        "disfarcado",
        "admin_total",
        "neto",
        "dono",
        "com_insert",
        "com_coluna",
        "membro",
        "membro_sem_heranca",
        "cria_schema",
        "com_default",
        "com_sequencia",
        "chama_funcao",
    ] {
        for f in findings(&cluster, role).await? {
            admin
                .batch_execute(&f.fix(role))
                .await
                .with_context(|| format!("{server} {role}: {}", f.fix(role)))?;
        }
        let left = findings(&cluster, role).await?;
        assert!(left.is_empty(), "{server} {role} (v{version}): {left:#?}");
    }

    // The role SQL the installer prints gives a role with nothing to write,
    // even where PUBLIC may create in `public` (before 15, by default).
    admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        .await?;
    let sql = write_access::read_only_role_sql(
        &Ident::new("transmissor_leitura")?,
        &Ident::new("esus")?,
        &[
            TableName::parse("pec.tb_cidadao")?,
            TableName::parse("pec.tb_atend")?,
        ],
    );
    admin
        .batch_execute(&sql.replace("'<senha / password>'", "'x'"))
        .await?;
    let f = findings(&cluster, "transmissor_leitura").await?;
    assert!(f.is_empty(), "{server}: {f:#?}");
    let reader = connect_as(&cluster, "transmissor_leitura").await?;
    reader
        .query("SELECT count(*) FROM pec.tb_cidadao", &[])
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_access_on_postgres_10() -> Result<()> {
    roles_on(PgServer::Embedded(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_access_on_the_system_postgres() -> Result<()> {
    roles_on(PgServer::System).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_access_on_postgres_18() -> Result<()> {
    roles_on(PgServer::Embedded(18)).await
}
