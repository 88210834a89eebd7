//! Whether the agent's database role (the login role: a `SET role` in its
//! settings can be undone with `RESET ROLE`) can write anything. The agent only
//! reads, inside a read-only snapshot; a role that *could* write is still a
//! failure, because the agent's credentials then become a way to change
//! the municipality's records. What counts (`queries/write_access.sql`):
//! attributes (superuser, createrole, createdb, replication, bypassrls),
//! predefined roles that write files or every table, write privileges on
//! any table, view, foreign table or sequence (and MAINTAIN, 17+), CREATE
//! on a schema or the database, default privileges that would make future
//! tables, sequences or schemas writable, and whatever it owns —
//! directly, through PUBLIC, or through any role it is a member of (with or
//! without INHERIT, since `SET ROLE` reaches those). SECURITY DEFINER
//! functions it may call are reported as warnings: they act with their
//! owner's rights, and whether they write cannot be known from here.
//!
//! Not covered: large objects (any role may create them), parameter
//! privileges (`GRANT SET`/`ALTER SYSTEM`, 15+), types and other objects it
//! might own besides tables, schemas, the database and routines, and what
//! an extension's functions allow.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use transmissor_proto::names::{quote_ident, quote_literal};

use super::lang::Lang;
use super::sql_name::{Ident, TableName};

/// What kind of access a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Attribute,
    PredefinedRole,
    Table,
    Sequence,
    Schema,
    Database,
    Owner,
    DefaultTables,
    DefaultSequences,
    DefaultSchemas,
    SecurityDefiner,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "attribute" => Self::Attribute,
            "predefined_role" => Self::PredefinedRole,
            "table" => Self::Table,
            "sequence" => Self::Sequence,
            "schema" => Self::Schema,
            "database" => Self::Database,
            "default_tables" => Self::DefaultTables,
            "default_sequences" => Self::DefaultSequences,
            "default_schemas" => Self::DefaultSchemas,
            "owner" => Self::Owner,
            "security_definer" => Self::SecurityDefiner,
            _ => return None,
        })
    }
}

/// Who holds a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    Public,
    Role(String),
}

impl std::fmt::Display for Grantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Public => f.write_str("PUBLIC"),
            Self::Role(r) => f.write_str(r),
        }
    }
}

/// One way the role could write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    /// The object, quoted as SQL: a table, a schema, the database; what it
    /// owns or a SECURITY DEFINER routine with its keyword (`TABLE x.y`,
    /// `FUNCTION x.f(integer)`); a role attribute (`superuser`); a
    /// predefined role; for default privileges the schema (empty: all).
    pub object: String,
    /// `INSERT`, `CREATE`, … (empty for attributes, ownership and
    /// predefined roles).
    pub privileges: Vec<String>,
    /// Who holds it: the role itself, a role it reaches, or PUBLIC.
    pub via: Vec<Grantee>,
    /// The login role's own memberships that lead to `via` (what to revoke).
    pub cut: Vec<String>,
    /// Default privileges: whose new objects they cover; SECURITY DEFINER
    /// routines: whom they run as; ownership: the database owner, to whom
    /// the object can be given.
    pub owner: String,
}

impl Finding {
    /// A warning rather than a failure (SECURITY DEFINER routines).
    pub fn is_warning(&self) -> bool {
        self.kind == Kind::SecurityDefiner
    }

    /// One line saying what the role could do.
    pub fn describe(&self, lang: Lang) -> String {
        let privs = self.privileges.join(", ");
        let via = self
            .via
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let (object, owner) = (&self.object, &self.owner);
        let in_schema = if object.is_empty() {
            String::new()
        } else {
            lang.pick(
                format!(" no schema {object}"),
                format!(" in schema {object}"),
            )
        };
        match (self.kind, lang) {
            (Kind::Attribute, Lang::Pt) => format!("o usuário tem o atributo {object} (por {via})"),
            (Kind::Attribute, Lang::En) => {
                format!("the role has the {object} attribute (through {via})")
            }
            (Kind::PredefinedRole, Lang::Pt) => format!("o usuário é membro de {object}"),
            (Kind::PredefinedRole, Lang::En) => format!("the role is a member of {object}"),
            (Kind::Owner, Lang::Pt) => format!("o usuário é dono de {object} (por {via})"),
            (Kind::Owner, Lang::En) => format!("the role owns {object} (through {via})"),
            (Kind::Table, Lang::Pt) => format!("{privs} na tabela {object} (por {via})"),
            (Kind::Table, Lang::En) => format!("{privs} on table {object} (through {via})"),
            (Kind::Sequence, Lang::Pt) => format!("{privs} na sequência {object} (por {via})"),
            (Kind::Sequence, Lang::En) => format!("{privs} on sequence {object} (through {via})"),
            (Kind::Schema, Lang::Pt) => format!("CREATE no schema {object} (por {via})"),
            (Kind::Schema, Lang::En) => format!("CREATE in schema {object} (through {via})"),
            (Kind::Database, Lang::Pt) => format!("CREATE no banco {object} (por {via})"),
            (Kind::Database, Lang::En) => format!("CREATE in database {object} (through {via})"),
            (Kind::DefaultTables, Lang::Pt) => format!(
                "privilégios padrão dão a {via} {privs} nas tabelas que {owner} criar{in_schema}"
            ),
            (Kind::DefaultTables, Lang::En) => format!(
                "default privileges give {via} {privs} on tables {owner} creates{in_schema}"
            ),
            (Kind::DefaultSequences, Lang::Pt) => format!(
                "privilégios padrão dão a {via} {privs} nas sequências que {owner} criar{in_schema}"
            ),
            (Kind::DefaultSequences, Lang::En) => format!(
                "default privileges give {via} {privs} on sequences {owner} creates{in_schema}"
            ),
            (Kind::DefaultSchemas, Lang::Pt) => {
                format!("privilégios padrão dão a {via} {privs} nos schemas que {owner} criar")
            }
            (Kind::DefaultSchemas, Lang::En) => {
                format!("default privileges give {via} {privs} on schemas {owner} creates")
            }
            (Kind::SecurityDefiner, Lang::Pt) => {
                format!("pode chamar {object}, que executa como {owner} (SECURITY DEFINER)")
            }
            (Kind::SecurityDefiner, Lang::En) => {
                format!("may call {object}, which runs as {owner} (SECURITY DEFINER)")
            }
        }
    }

    /// The SQL an administrator runs to take this access away from `role`
    /// (the agent's login role): grants to the role itself or to PUBLIC
    /// are revoked; what comes through another role is cut at the login
    /// role's own membership (the role granted may be the application's);
    /// what it owns is given to the database's owner.
    pub fn fix(&self, role: &str) -> String {
        let me = quote_ident(role);
        let grantees: Vec<String> = self
            .via
            .iter()
            .filter_map(|v| match v {
                Grantee::Public => Some("PUBLIC".to_string()),
                Grantee::Role(r) if r == role => Some(me.clone()),
                Grantee::Role(_) => None,
            })
            .collect();
        let cuts = self
            .cut
            .iter()
            .map(|hop| format!("REVOKE {} FROM {me};", quote_ident(hop)));
        let privileges = self.privileges.join(", ");
        let on = |what: &str| {
            format!(
                "REVOKE {privileges} ON {what}{} FROM {};",
                self.object,
                grantees.join(", ")
            )
        };
        let defaults = |what: &str| {
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {}{} REVOKE {privileges} ON {what} FROM {};",
                self.owner,
                if self.object.is_empty() {
                    String::new()
                } else {
                    format!(" IN SCHEMA {}", self.object)
                },
                grantees.join(", ")
            )
        };
        let direct = match self.kind {
            Kind::PredefinedRole => None,
            Kind::Owner if grantees.is_empty() => None,
            Kind::Owner => Some(format!("ALTER {} OWNER TO {};", self.object, self.owner)),
            _ if grantees.is_empty() => None,
            Kind::Attribute => Some(format!("ALTER ROLE {me} NO{};", self.object.to_uppercase())),
            Kind::Table => Some(on("")),
            Kind::Sequence => Some(on("SEQUENCE ")),
            Kind::Schema => Some(on("SCHEMA ")),
            Kind::Database => Some(on("DATABASE ")),
            Kind::SecurityDefiner => Some(on("")),
            Kind::DefaultTables => Some(defaults("TABLES")),
            Kind::DefaultSequences => Some(defaults("SEQUENCES")),
            Kind::DefaultSchemas => Some(defaults("SCHEMAS")),
        };
        direct.into_iter().chain(cuts).collect::<Vec<_>>().join(" ")
    }
}

/// Everything the connected role could write, grouped by object (one
/// finding per object and kind, its privileges and the roles they come
/// through gathered).
pub async fn check(client: &Client) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let rows = client
        .query(include_str!("queries/write_access.sql"), &[])
        .await?;
    let mut grouped: BTreeMap<(Kind, String, String), Finding> = BTreeMap::new();
    for row in rows {
        let kind: String = row.get(0);
        let Some(kind) = Kind::parse(&kind) else {
            continue;
        };
        let grantee: Option<String> = row.get(1);
        let (object, privilege, owner): (String, String, String) =
            (row.get(2), row.get(3), row.get(4));
        let hop: Option<String> = row.get(5);
        let f = grouped
            .entry((kind, object.clone(), owner.clone()))
            .or_insert_with(|| Finding {
                kind,
                object,
                privileges: Vec::new(),
                via: Vec::new(),
                cut: Vec::new(),
                owner,
            });
        if !privilege.is_empty() && !f.privileges.contains(&privilege) {
            f.privileges.push(privilege);
        }
        let grantee = grantee.map_or(Grantee::Public, Grantee::Role);
        if !f.via.contains(&grantee) {
            f.via.push(grantee);
        }
        if let Some(hop) = hop
            && !f.cut.contains(&hop)
        {
            f.cut.push(hop);
        }
    }
    let findings: Vec<Finding> = grouped.into_values().collect();
    // A superuser can do everything: that one finding says it all.
    if let Some(su) = findings
        .iter()
        .find(|f| f.kind == Kind::Attribute && f.object == "superuser")
    {
        return Ok(vec![su.clone()]);
    }
    Ok(findings)
}

/// The SQL that creates a login role reading only `tables`, for the
/// installer to print; the password is a placeholder the administrator
/// replaces. Every name is quoted by [`Ident`]'s and [`TableName`]'s
/// rendering, whatever the plan's SQL called it.
pub fn read_only_role_sql(role: &Ident, database: &Ident, tables: &[TableName]) -> String {
    format!(
        "{}{}",
        role_login_sql(role, &quote_literal("<senha / password>"), false),
        read_only_grants_sql(role, database, tables)
    )
}

/// The statement that makes `role` a plain login role with `password` (an
/// SQL literal made by [`super::sql_name::literal`], or `NULL`): `CREATE
/// ROLE`, or `ALTER ROLE` when it exists.
pub fn role_login_sql(role: &Ident, password: &str, exists: bool) -> String {
    format!(
        "{} ROLE {role} LOGIN PASSWORD {password} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;\n",
        if exists { "ALTER" } else { "CREATE" },
    )
}

/// What the read-only role is granted: connecting, reading `tables`, and
/// `public` closed to CREATE.
pub fn read_only_grants_sql(role: &Ident, database: &Ident, tables: &[TableName]) -> String {
    let r = role;
    let mut schemas: Vec<&Ident> = tables.iter().filter_map(TableName::schema).collect();
    schemas.sort_unstable();
    schemas.dedup();
    let mut sql = format!("GRANT CONNECT ON DATABASE {database} TO {r};\n");
    for s in schemas {
        sql.push_str(&format!("GRANT USAGE ON SCHEMA {s} TO {r};\n"));
    }
    for t in tables {
        sql.push_str(&format!("GRANT SELECT ON {t} TO {r};\n"));
    }
    sql.push_str(&format!(
        "ALTER ROLE {r} SET default_transaction_read_only = on;\n"
    ));
    // Before PostgreSQL 15 every role may create in `public`.
    sql.push_str("REVOKE CREATE ON SCHEMA public FROM PUBLIC;\n");
    sql
}
