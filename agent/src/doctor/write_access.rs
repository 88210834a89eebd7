//! Whether the agent's database role can write anything. The agent only
//! reads, inside a read-only snapshot; a role that *could* write is still a
//! failure, because the agent's credentials then become a way to change
//! the municipality's records. What counts (`queries/write_access.sql`):
//! attributes (superuser, createrole, createdb, replication, bypassrls),
//! predefined roles that write files or every table, write privileges on
//! any table, view, foreign table or sequence, CREATE on a schema or the
//! database, default privileges that would make future tables writable —
//! directly, through PUBLIC, or through any role it is a member of (with or
//! without INHERIT, since `SET ROLE` reaches those). SECURITY DEFINER
//! functions it may call are reported as warnings: they act with their
//! owner's rights, and whether they write cannot be known from here.
//!
//! Not covered: large objects (any role may create them) and
//! what an extension's functions allow.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use transmissor_proto::names::{quote_ident, quote_literal};

/// What kind of access a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Attribute,
    PredefinedRole,
    Table,
    Sequence,
    Schema,
    Database,
    DefaultTables,
    DefaultSequences,
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
            "security_definer" => Self::SecurityDefiner,
            _ => return None,
        })
    }
}

/// One way the role could write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    /// The object, quoted as SQL: a table, a schema, the database, a
    /// function's signature, a role attribute (`superuser`), a predefined
    /// role; for default privileges the schema (empty: every schema).
    pub object: String,
    /// `INSERT`, `CREATE`, … (empty for attributes and predefined roles).
    pub privileges: Vec<String>,
    /// The roles it comes through: the role itself, roles it is a member
    /// of, or `PUBLIC` (default privileges name the grantee).
    pub via: Vec<String>,
    /// Default privileges: whose new objects they cover; functions: the
    /// owner they run as.
    pub owner: String,
}

impl Finding {
    /// A warning rather than a failure (SECURITY DEFINER functions).
    pub fn is_warning(&self) -> bool {
        self.kind == Kind::SecurityDefiner
    }

    /// One line in English saying what the role could do.
    pub fn describe(&self) -> String {
        let privs = self.privileges.join(", ");
        let via = self.via.join(", ");
        match self.kind {
            Kind::Attribute => {
                format!("the role has the {} attribute (through {via})", self.object)
            }
            Kind::PredefinedRole => format!("the role is a member of {}", self.object),
            Kind::Table => format!("{privs} on table {} (through {via})", self.object),
            Kind::Sequence => format!("{privs} on sequence {} (through {via})", self.object),
            Kind::Schema => format!("CREATE in schema {} (through {via})", self.object),
            Kind::Database => format!("CREATE in database {} (through {via})", self.object),
            Kind::DefaultTables | Kind::DefaultSequences => format!(
                "default privileges give {via} {privs} on {} {} creates{}",
                if self.kind == Kind::DefaultTables {
                    "tables"
                } else {
                    "sequences"
                },
                self.owner,
                if self.object.is_empty() {
                    String::new()
                } else {
                    format!(" in schema {}", self.object)
                }
            ),
            Kind::SecurityDefiner => format!(
                "may call {}, which runs as {} (SECURITY DEFINER)",
                self.object, self.owner
            ),
        }
    }

    /// The SQL an administrator runs to take this access away from `role`
    /// (the agent's login role): grants to the role itself or to PUBLIC
    /// are revoked; access through another role is cut at the membership
    /// (that role may be the application's own).
    pub fn fix(&self, role: &str) -> String {
        let me = quote_ident(role);
        let mut grantees = Vec::new();
        let mut statements = Vec::new();
        for v in &self.via {
            if v == "PUBLIC" {
                grantees.push(v.clone());
            } else if v == role {
                grantees.push(me.clone());
            } else if self.kind != Kind::PredefinedRole {
                statements.push(format!("REVOKE {} FROM {me};", quote_ident(v)));
            }
        }
        let privileges = self.privileges.join(", ");
        let on = |what: &str| {
            format!(
                "REVOKE {privileges} ON {what}{} FROM {};",
                self.object,
                grantees.join(", ")
            )
        };
        let direct = match self.kind {
            _ if grantees.is_empty() && self.kind != Kind::PredefinedRole => None,
            Kind::Attribute => Some(format!("ALTER ROLE {me} NO{};", self.object.to_uppercase())),
            Kind::PredefinedRole => {
                Some(format!("REVOKE {} FROM {me};", quote_ident(&self.object)))
            }
            Kind::Table => Some(on("")),
            Kind::Sequence => Some(on("SEQUENCE ")),
            Kind::Schema => Some(on("SCHEMA ")),
            Kind::Database => Some(on("DATABASE ")),
            Kind::SecurityDefiner => Some(on("FUNCTION ")),
            Kind::DefaultTables | Kind::DefaultSequences => Some(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {}{} REVOKE {privileges} ON {} FROM {};",
                self.owner,
                if self.object.is_empty() {
                    String::new()
                } else {
                    format!(" IN SCHEMA {}", self.object)
                },
                if self.kind == Kind::DefaultTables {
                    "TABLES"
                } else {
                    "SEQUENCES"
                },
                grantees.join(", ")
            )),
        };
        direct
            .into_iter()
            .chain(statements)
            .collect::<Vec<_>>()
            .join(" ")
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
        let (via, object, privilege, owner): (String, String, String, String) =
            (row.get(1), row.get(2), row.get(3), row.get(4));
        let f = grouped
            .entry((kind, object.clone(), owner.clone()))
            .or_insert_with(|| Finding {
                kind,
                object,
                privileges: Vec::new(),
                via: Vec::new(),
                owner,
            });
        if !privilege.is_empty() && !f.privileges.contains(&privilege) {
            f.privileges.push(privilege);
        }
        if !f.via.contains(&via) {
            f.via.push(via);
        }
    }
    let findings: Vec<Finding> = grouped.into_values().collect();
    // A superuser can do everything (and counts as a member of every role):
    // that one finding says it all.
    if let Some(su) = findings
        .iter()
        .find(|f| f.kind == Kind::Attribute && f.object == "superuser")
    {
        let me: String = client
            .query_one("SELECT current_user::text", &[])
            .await?
            .get(0);
        let mut su = su.clone();
        if su.via.contains(&me) {
            su.via = vec![me];
        }
        return Ok(vec![su]);
    }
    Ok(findings)
}

/// The SQL that creates a login role reading only `tables` (quoted names,
/// `schema.table`), for the installer to print; the password is a
/// placeholder the administrator replaces.
pub fn read_only_role_sql(role: &str, database: &str, tables: &[String]) -> String {
    let r = quote_ident(role);
    let mut schemas: Vec<&str> = tables
        .iter()
        .filter_map(|t| t.split_once('.').map(|(s, _)| s))
        .collect();
    schemas.sort_unstable();
    schemas.dedup();
    let mut sql = format!(
        "CREATE ROLE {r} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;\n\
         GRANT CONNECT ON DATABASE {} TO {r};\n",
        quote_literal("<senha / password>"),
        quote_ident(database)
    );
    for s in schemas {
        sql.push_str(&format!("GRANT USAGE ON SCHEMA {s} TO {r};\n"));
    }
    for t in tables {
        sql.push_str(&format!("GRANT SELECT ON {t} TO {r};\n"));
    }
    sql.push_str(&format!(
        "ALTER ROLE {r} SET default_transaction_read_only = on;\n"
    ));
    sql
}
