//! The checklist's vocabulary: which check ([`Check`]), how it came out
//! ([`Outcome`]), and one line of it ([`Item`]).

use serde::Serialize;

use super::finding::Finding;
use super::lang::Lang;

/// One check of the checklist, in the order it is printed. Its id is stable
/// (the JSON output and the heartbeat's summary carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    Config,
    DatabaseConnect,
    DatabaseVersion,
    DatabasePecVersion,
    DatabaseRead,
    DatabaseWriteAccess,
    Certificate,
    CollectorConnect,
    CollectorClock,
    Plan,
    Spool,
    Service,
    Systemd,
}

impl Check {
    pub const ALL: [Check; 13] = [
        Self::Config,
        Self::DatabaseConnect,
        Self::DatabaseVersion,
        Self::DatabasePecVersion,
        Self::DatabaseRead,
        Self::DatabaseWriteAccess,
        Self::Certificate,
        Self::CollectorConnect,
        Self::CollectorClock,
        Self::Plan,
        Self::Spool,
        Self::Service,
        Self::Systemd,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::DatabaseConnect => "database.connect",
            Self::DatabaseVersion => "database.version",
            Self::DatabasePecVersion => "database.pec_version",
            Self::DatabaseRead => "database.read",
            Self::DatabaseWriteAccess => "database.write_access",
            Self::Certificate => "certificate",
            Self::CollectorConnect => "collector.connect",
            Self::CollectorClock => "collector.clock",
            Self::Plan => "plan",
            Self::Spool => "spool",
            Self::Service => "service",
            Self::Systemd => "systemd",
        }
    }

    /// The check from its id (`--skip`).
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.id() == id)
    }

    /// What the check is about, as printed before its result.
    pub fn title(self, lang: Lang) -> &'static str {
        match self {
            Self::Config => lang.pick("Configuração", "Configuration"),
            Self::DatabaseConnect => {
                lang.pick("Conexão ao banco do PEC", "PEC database connection")
            }
            Self::DatabaseVersion => lang.pick("Versão do PostgreSQL", "PostgreSQL version"),
            Self::DatabasePecVersion => lang.pick("Versão do PEC", "PEC version"),
            Self::DatabaseRead => {
                lang.pick("Leitura das tabelas do plano", "Reading the plan's tables")
            }
            Self::DatabaseWriteAccess => lang.pick(
                "Usuário do banco somente leitura",
                "Database role is read-only",
            ),
            Self::Certificate => lang.pick("Certificado do agente", "Agent certificate"),
            Self::CollectorConnect => lang.pick("Conexão ao coletor", "Collector connection"),
            Self::CollectorClock => lang.pick("Relógio", "Clock"),
            Self::Plan => lang.pick("Plano de extração", "Extraction plan"),
            Self::Spool => lang.pick("Fila local (spool)", "Local spool"),
            Self::Service => lang.pick("Serviço", "Service"),
            Self::Systemd => lang.pick("Versão do systemd", "systemd version"),
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// How a check came out; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Not run: it needs something that failed before, or was skipped.
    Skip,
    Pass,
    Warn,
    Fail,
}

impl Outcome {
    pub fn label(self, lang: Lang) -> &'static str {
        match self {
            Self::Skip => lang.pick("NÃO VERIFICADO", "SKIPPED"),
            Self::Pass => lang.pick("OK", "PASS"),
            Self::Warn => lang.pick("AVISO", "WARNING"),
            Self::Fail => lang.pick("FALHA", "FAIL"),
        }
    }
}

/// One result: a check and what was found.
#[derive(Debug, Clone)]
pub struct Item {
    pub check: Check,
    pub finding: Finding,
}

impl Item {
    pub fn new(check: Check, finding: Finding) -> Self {
        Self { check, finding }
    }

    pub fn outcome(&self) -> Outcome {
        self.finding.outcome()
    }
}
