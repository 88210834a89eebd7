//! What a check found ([`Finding`]): its outcome, a stable code, and the
//! sentence and the fix that municipal IT reads, in Portuguese or English.
//! Details quoted from elsewhere (a PostgreSQL or TLS error) stay as the
//! other side wrote them.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::item::{Check, Outcome};
use super::lang::Lang;
use super::write_access;

/// One thing a check found. Each variant knows its outcome; the texts are
/// in [`Finding::message`] and [`Finding::fix`].
#[derive(Debug, Clone)]
pub enum Finding {
    /// Not run, because `needs` did not pass (or was skipped).
    NotChecked {
        needs: Check,
    },
    /// Not run: `--skip`.
    Skipped,

    ConfigOk {
        path: PathBuf,
        central: bool,
    },
    ConfigInvalid {
        path: PathBuf,
        error: String,
    },

    DbConnected {
        host: String,
        port: u16,
        dbname: String,
        user: String,
    },
    DbPasswordUnreadable {
        error: String,
    },
    DbUnreachable {
        host: String,
        port: u16,
        error: String,
    },
    DbAuthFailed {
        user: String,
        error: String,
    },
    DbNoHbaEntry {
        user: String,
        dbname: String,
        error: String,
    },
    DbNoDatabase {
        dbname: String,
    },
    DbError {
        error: String,
    },

    VersionSupported {
        version: String,
    },
    VersionTooOld {
        version: String,
    },
    VersionUntested {
        version: String,
    },

    PecFound {
        version: String,
    },
    PecUnknown,

    JobReadable {
        job: String,
        columns: usize,
    },
    NoJobs,
    ReadDenied {
        job: String,
        object: Option<String>,
        user: String,
        error: String,
    },
    TableMissing {
        job: String,
        error: String,
    },
    QueryFailed {
        job: String,
        error: String,
    },

    CannotWrite {
        role: String,
    },
    CanWrite {
        role: String,
        access: write_access::Finding,
    },
    MayWrite {
        role: String,
        access: write_access::Finding,
    },

    NotEnrolled {
        path: PathBuf,
    },
    IdentityUnreadable {
        error: String,
    },
    CertValid {
        not_after: DateTime<Utc>,
        days_left: i64,
    },
    CertExpiring {
        not_after: DateTime<Utc>,
        days_left: i64,
    },
    CertExpired {
        not_after: DateTime<Utc>,
    },
    CertNotYetValid {
        not_before: DateTime<Utc>,
    },

    CollectorOk {
        endpoint: String,
        ibge: String,
        agent_id: String,
    },
    CollectorUnreachable {
        endpoint: String,
        error: String,
    },
    CollectorNotTrusted {
        endpoint: String,
        error: String,
    },
    CollectorRefused {
        endpoint: String,
        error: String,
    },

    ClockOk {
        offset_ms: i64,
    },
    ClockSkewed {
        offset_ms: i64,
    },

    PlanRunning {
        version: u64,
        key_id: String,
        expires_at: DateTime<Utc>,
    },
    PlanBehind {
        running: u64,
        published: u64,
    },
    PlanExpired {
        version: u64,
        expires_at: DateTime<Utc>,
    },
    PlanRefused {
        reason: String,
        running: Option<u64>,
    },
    PlanNone {
        published: Option<u64>,
    },
    LocalJobs {
        jobs: usize,
    },

    SpoolOk {
        dir: PathBuf,
        free: u64,
        limit: u64,
    },
    SpoolNotWritable {
        dir: PathBuf,
        error: String,
    },
    SpoolFull {
        dir: PathBuf,
        free: u64,
        need: u64,
    },
    SpoolLow {
        dir: PathBuf,
        free: u64,
        limit: u64,
    },

    ServiceRunning {
        name: String,
    },
    ServiceNotInstalled {
        name: String,
    },
    ServiceDisabled {
        name: String,
    },
    ServiceNotRunning {
        name: String,
        state: String,
    },
    NoServiceManager,

    SystemdOk {
        version: u32,
        min: u32,
    },
    SystemdOld {
        version: u32,
        min: u32,
    },
    SystemdUnknown {
        error: String,
    },
}

/// Bytes for people: `1.5 GiB`.
fn size(b: u64) -> String {
    bytesize::ByteSize(b).display().iec().to_string()
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

impl Finding {
    pub fn outcome(&self) -> Outcome {
        use Finding::*;
        match self {
            NotChecked { .. } | Skipped => Outcome::Skip,
            ConfigOk { .. }
            | DbConnected { .. }
            | VersionSupported { .. }
            | PecFound { .. }
            | JobReadable { .. }
            | CannotWrite { .. }
            | CertValid { .. }
            | CollectorOk { .. }
            | ClockOk { .. }
            | PlanRunning { .. }
            | SpoolOk { .. }
            | ServiceRunning { .. }
            | SystemdOk { .. } => Outcome::Pass,
            VersionUntested { .. }
            | PecUnknown
            | NoJobs
            | MayWrite { .. }
            | CertExpiring { .. }
            | PlanBehind { .. }
            | PlanExpired { .. }
            | PlanNone { .. }
            | LocalJobs { .. }
            | SpoolLow { .. }
            | NoServiceManager
            | SystemdUnknown { .. } => Outcome::Warn,
            PlanRefused { running, .. } => {
                if running.is_some() {
                    Outcome::Warn
                } else {
                    Outcome::Fail
                }
            }
            ConfigInvalid { .. }
            | DbPasswordUnreadable { .. }
            | DbUnreachable { .. }
            | DbAuthFailed { .. }
            | DbNoHbaEntry { .. }
            | DbNoDatabase { .. }
            | DbError { .. }
            | VersionTooOld { .. }
            | ReadDenied { .. }
            | TableMissing { .. }
            | QueryFailed { .. }
            | CanWrite { .. }
            | NotEnrolled { .. }
            | IdentityUnreadable { .. }
            | CertExpired { .. }
            | CertNotYetValid { .. }
            | CollectorUnreachable { .. }
            | CollectorNotTrusted { .. }
            | CollectorRefused { .. }
            | ClockSkewed { .. }
            | SpoolNotWritable { .. }
            | SpoolFull { .. }
            | ServiceNotInstalled { .. }
            | ServiceDisabled { .. }
            | ServiceNotRunning { .. }
            | SystemdOld { .. } => Outcome::Fail,
        }
    }

    /// A stable code for machines (JSON, the heartbeat's summary).
    pub fn code(&self) -> &'static str {
        use Finding::*;
        match self {
            NotChecked { .. } => "not_checked",
            Skipped => "skipped",
            ConfigOk { .. } => "ok",
            ConfigInvalid { .. } => "invalid",
            DbConnected { .. } => "ok",
            DbPasswordUnreadable { .. } => "password_unreadable",
            DbUnreachable { .. } => "unreachable",
            DbAuthFailed { .. } => "auth_failed",
            DbNoHbaEntry { .. } => "no_hba_entry",
            DbNoDatabase { .. } => "no_database",
            DbError { .. } => "error",
            VersionSupported { .. } => "ok",
            VersionTooOld { .. } => "too_old",
            VersionUntested { .. } => "untested",
            PecFound { .. } => "ok",
            PecUnknown => "unknown",
            JobReadable { .. } => "ok",
            NoJobs => "no_jobs",
            ReadDenied { .. } => "permission_denied",
            TableMissing { .. } => "missing_table",
            QueryFailed { .. } => "query_failed",
            CannotWrite { .. } => "ok",
            CanWrite { .. } => "can_write",
            MayWrite { .. } => "security_definer",
            NotEnrolled { .. } => "not_enrolled",
            IdentityUnreadable { .. } => "unreadable",
            CertValid { .. } => "ok",
            CertExpiring { .. } => "expiring",
            CertExpired { .. } => "expired",
            CertNotYetValid { .. } => "not_yet_valid",
            CollectorOk { .. } => "ok",
            CollectorUnreachable { .. } => "unreachable",
            CollectorNotTrusted { .. } => "pin_mismatch",
            CollectorRefused { .. } => "refused",
            ClockOk { .. } => "ok",
            ClockSkewed { .. } => "skewed",
            PlanRunning { .. } => "ok",
            PlanBehind { .. } => "behind",
            PlanExpired { .. } => "expired",
            PlanRefused { .. } => "refused",
            PlanNone { .. } => "none",
            LocalJobs { .. } => "local_jobs",
            SpoolOk { .. } => "ok",
            SpoolNotWritable { .. } => "not_writable",
            SpoolFull { .. } => "full",
            SpoolLow { .. } => "low_space",
            ServiceRunning { .. } => "ok",
            ServiceNotInstalled { .. } => "not_installed",
            ServiceDisabled { .. } => "disabled",
            ServiceNotRunning { .. } => "not_running",
            NoServiceManager => "no_service_manager",
            SystemdOk { .. } => "ok",
            SystemdOld { .. } => "too_old",
            SystemdUnknown { .. } => "unknown",
        }
    }

    /// What was found, in one sentence.
    pub fn message(&self, lang: Lang) -> String {
        use Finding::*;
        let pt = lang == Lang::Pt;
        match self {
            NotChecked { needs } => {
                if pt {
                    format!("não verificado: depende de \"{}\"", needs.title(lang))
                } else {
                    format!("not checked: needs \"{}\"", needs.title(lang))
                }
            }
            Skipped => lang.pick("pulado (--skip)", "skipped (--skip)").into(),
            ConfigOk { path, central } => {
                let mode = match (central, pt) {
                    (true, true) => "modo central: só planos assinados",
                    (true, false) => "central mode: signed plans only",
                    (false, true) => "rotinas locais do arquivo (desenvolvimento)",
                    (false, false) => "local jobs of the file (development)",
                };
                format!("{} ({mode})", path.display())
            }
            ConfigInvalid { path, error } => lang.pick(
                format!("{} não pôde ser lido: {error}", path.display()),
                format!("{} cannot be used: {error}", path.display()),
            ),
            DbConnected { host, port, dbname, user } => lang.pick(
                format!("conectado a {host}:{port}/{dbname} como {user}"),
                format!("connected to {host}:{port}/{dbname} as {user}"),
            ),
            DbPasswordUnreadable { error } => lang.pick(
                format!("a senha do banco não pôde ser lida: {error}"),
                format!("the database password cannot be read: {error}"),
            ),
            DbUnreachable { host, port, error } => lang.pick(
                format!("o PostgreSQL em {host}:{port} não respondeu: {error}"),
                format!("PostgreSQL at {host}:{port} did not answer: {error}"),
            ),
            DbAuthFailed { user, error } => lang.pick(
                format!("o banco recusou a senha do usuário {user}: {error}"),
                format!("the database refused the password of role {user}: {error}"),
            ),
            DbNoHbaEntry { user, dbname, error } => lang.pick(
                format!("o pg_hba.conf não permite {user} no banco {dbname} a partir desta máquina: {error}"),
                format!("pg_hba.conf does not let {user} into {dbname} from this machine: {error}"),
            ),
            DbNoDatabase { dbname } => lang.pick(
                format!("o banco {dbname} não existe neste servidor"),
                format!("database {dbname} does not exist on this server"),
            ),
            DbError { error } => lang.pick(
                format!("erro do banco: {error}"),
                format!("database error: {error}"),
            ),
            VersionSupported { version } => format!("PostgreSQL {version}"),
            VersionTooOld { version } => lang.pick(
                format!("PostgreSQL {version} é anterior ao 9.6, a mais antiga suportada"),
                format!("PostgreSQL {version} is older than 9.6, the oldest supported"),
            ),
            VersionUntested { version } => lang.pick(
                format!("PostgreSQL {version} é mais novo que o 18, o mais novo testado"),
                format!("PostgreSQL {version} is newer than 18, the newest tested"),
            ),
            PecFound { version } => format!("PEC {version}"),
            PecUnknown => lang
                .pick(
                    "versão do PEC não encontrada (sem tb_migracao)",
                    "PEC version not found (no tb_migracao)",
                )
                .into(),
            JobReadable { job, columns } => lang.pick(
                format!("rotina {job}: leitura ok ({columns} colunas)"),
                format!("job {job}: readable ({columns} columns)"),
            ),
            NoJobs => lang
                .pick(
                    "nenhum plano aceito ainda: nada a verificar",
                    "no plan accepted yet: nothing to check",
                )
                .into(),
            ReadDenied { job, object, error, .. } => match object {
                Some(o) => lang.pick(
                    format!("rotina {job}: sem permissão de leitura em {o}"),
                    format!("job {job}: no permission to read {o}"),
                ),
                None => lang.pick(
                    format!("rotina {job}: sem permissão de leitura: {error}"),
                    format!("job {job}: no permission to read: {error}"),
                ),
            },
            TableMissing { job, error } => lang.pick(
                format!("rotina {job}: tabela ou coluna ausente: {error}"),
                format!("job {job}: missing table or column: {error}"),
            ),
            QueryFailed { job, error } => lang.pick(
                format!("rotina {job}: a consulta falhou: {error}"),
                format!("job {job}: the query failed: {error}"),
            ),
            CannotWrite { role } => lang.pick(
                format!("{role} não pode escrever em nada"),
                format!("{role} cannot write anything"),
            ),
            CanWrite { role, access } | MayWrite { role, access } => {
                format!("{role}: {}", access.describe(lang))
            }
            NotEnrolled { path } => lang.pick(
                format!("agente não cadastrado: {} não existe", path.display()),
                format!("agent not enrolled: {} does not exist", path.display()),
            ),
            IdentityUnreadable { error } => lang.pick(
                format!("identidade ilegível: {error}"),
                format!("identity unreadable: {error}"),
            ),
            CertValid { not_after, days_left } => lang.pick(
                format!("válido até {} ({days_left} dias)", not_after.to_rfc3339()),
                format!("valid until {} ({days_left} days)", not_after.to_rfc3339()),
            ),
            CertExpiring { not_after, days_left } => lang.pick(
                format!("expira em {days_left} dias ({}) e não foi renovado", not_after.to_rfc3339()),
                format!("expires in {days_left} days ({}) and was not renewed", not_after.to_rfc3339()),
            ),
            CertExpired { not_after } => lang.pick(
                format!("expirou em {}", not_after.to_rfc3339()),
                format!("expired on {}", not_after.to_rfc3339()),
            ),
            CertNotYetValid { not_before } => lang.pick(
                format!("só vale a partir de {}", not_before.to_rfc3339()),
                format!("not valid before {}", not_before.to_rfc3339()),
            ),
            CollectorOk { endpoint, ibge, agent_id } => lang.pick(
                format!("{endpoint} respondeu: agente {agent_id} do município {ibge}"),
                format!("{endpoint} answered: agent {agent_id} of municipality {ibge}"),
            ),
            CollectorUnreachable { endpoint, error } => lang.pick(
                format!("{endpoint} não respondeu: {error}"),
                format!("{endpoint} did not answer: {error}"),
            ),
            CollectorNotTrusted { endpoint, error } => lang.pick(
                format!("o certificado de {endpoint} não corresponde à autoridade fixada no cadastro: {error}"),
                format!("the certificate of {endpoint} does not match the authority pinned at enrollment: {error}"),
            ),
            CollectorRefused { endpoint, error } => lang.pick(
                format!("{endpoint} recusou este agente: {error}"),
                format!("{endpoint} refused this agent: {error}"),
            ),
            ClockOk { offset_ms } => lang.pick(
                format!("diferença de {} para o coletor", secs(offset_ms.abs())),
                format!("{} off the collector's", secs(offset_ms.abs())),
            ),
            ClockSkewed { offset_ms } => lang.pick(
                format!(
                    "o relógio desta máquina está {} {} do coletor",
                    secs(offset_ms.abs()),
                    if *offset_ms > 0 { "atrás" } else { "adiantado" }
                ),
                format!(
                    "this machine's clock is {} {} the collector's",
                    secs(offset_ms.abs()),
                    if *offset_ms > 0 { "behind" } else { "ahead of" }
                ),
            ),
            PlanRunning { version, key_id, expires_at } => lang.pick(
                format!("versão {version} (assinada por {key_id}, vence em {})", expires_at.to_rfc3339()),
                format!("version {version} (signed by {key_id}, expires {})", expires_at.to_rfc3339()),
            ),
            PlanBehind { running, published } => lang.pick(
                format!("roda a versão {running}; o coletor publica a {published} (o serviço a busca no próximo sinal)"),
                format!("runs version {running}; the collector publishes {published} (the service fetches it at its next heartbeat)"),
            ),
            PlanExpired { version, expires_at } => lang.pick(
                format!("a versão {version} venceu em {} (continua rodando, sinalizada)", expires_at.to_rfc3339()),
                format!("version {version} expired on {} (it keeps running, flagged)", expires_at.to_rfc3339()),
            ),
            PlanRefused { reason, running } => match running {
                Some(v) => lang.pick(
                    format!("roda a versão {v}; o último plano oferecido foi recusado: {reason}"),
                    format!("runs version {v}; the last plan offered was refused: {reason}"),
                ),
                None => lang.pick(
                    format!("nenhum plano aceito; o último foi recusado: {reason}"),
                    format!("no plan accepted; the last was refused: {reason}"),
                ),
            },
            PlanNone { published } => match published {
                Some(v) => lang.pick(
                    format!("nenhum plano aceito ainda; o coletor publica a versão {v}"),
                    format!("no plan accepted yet; the collector publishes version {v}"),
                ),
                None => lang.pick(
                    "nenhum plano aceito ainda".to_string(),
                    "no plan accepted yet".to_string(),
                ),
            },
            LocalJobs { jobs } => lang.pick(
                format!("{jobs} rotinas locais, sem chave de plano: modo de desenvolvimento"),
                format!("{jobs} local jobs, no plan key: development mode"),
            ),
            SpoolOk { dir, free, limit } => lang.pick(
                format!("{}: gravável, {} livres (limite {})", dir.display(), size(*free), size(*limit)),
                format!("{}: writable, {} free (limit {})", dir.display(), size(*free), size(*limit)),
            ),
            SpoolNotWritable { dir, error } => lang.pick(
                format!("{}: não é possível gravar: {error}", dir.display()),
                format!("{}: cannot write: {error}", dir.display()),
            ),
            SpoolFull { dir, free, need } => lang.pick(
                format!("{}: só {} livres (mínimo {})", dir.display(), size(*free), size(*need)),
                format!("{}: only {} free (at least {} needed)", dir.display(), size(*free), size(*need)),
            ),
            SpoolLow { dir, free, limit } => lang.pick(
                format!("{}: {} livres, menos que o limite da fila ({})", dir.display(), size(*free), size(*limit)),
                format!("{}: {} free, less than the spool's limit ({})", dir.display(), size(*free), size(*limit)),
            ),
            ServiceRunning { name } => lang.pick(
                format!("{name} instalado, habilitado e rodando"),
                format!("{name} installed, enabled and running"),
            ),
            ServiceNotInstalled { name } => lang.pick(
                format!("o serviço {name} não está instalado"),
                format!("service {name} is not installed"),
            ),
            ServiceDisabled { name } => lang.pick(
                format!("o serviço {name} não inicia com o sistema"),
                format!("service {name} does not start at boot"),
            ),
            ServiceNotRunning { name, state } => lang.pick(
                format!("o serviço {name} não está rodando ({state})"),
                format!("service {name} is not running ({state})"),
            ),
            NoServiceManager => lang
                .pick(
                    "o systemd não gerencia esta máquina (contêiner?): ninguém reinicia o agente",
                    "systemd does not manage this machine (a container?): nothing restarts the agent",
                )
                .into(),
            SystemdOk { version, min } => lang.pick(
                format!("systemd {version} (mínimo {min})"),
                format!("systemd {version} (at least {min})"),
            ),
            SystemdOld { version, min } => lang.pick(
                format!("systemd {version} ignora em silêncio parte do isolamento do serviço (precisa de {min})"),
                format!("systemd {version} silently ignores part of the unit's sandboxing (needs {min})"),
            ),
            SystemdUnknown { error } => lang.pick(
                format!("versão do systemd desconhecida: {error}"),
                format!("systemd version unknown: {error}"),
            ),
        }
    }

    /// What to do about it (None when nothing is to be done).
    pub fn fix(&self, lang: Lang, ctx: &FixContext) -> Option<String> {
        use Finding::*;
        let cfg = ctx.config.display();
        let service = &ctx.service;
        Some(match self {
            NotChecked { .. } | Skipped => return None,
            ConfigOk { .. }
            | DbConnected { .. }
            | VersionSupported { .. }
            | PecFound { .. }
            | JobReadable { .. }
            | CannotWrite { .. }
            | CertValid { .. }
            | CollectorOk { .. }
            | ClockOk { .. }
            | PlanRunning { .. }
            | SpoolOk { .. }
            | ServiceRunning { .. }
            | SystemdOk { .. } => return None,
            ConfigInvalid { .. } => lang.pick(
                format!("corrija o campo indicado em {cfg}, ou rode o instalador de novo"),
                format!("correct the field named above in {cfg}, or run the installer again"),
            ),
            DbPasswordUnreadable { .. } => lang.pick(
                "grave a senha no arquivo de [source] password_file, legível só pela conta do serviço (0600)".into(),
                "write the password into [source] password_file, readable only by the service account (0600)".into(),
            ),
            DbUnreachable { port, .. } => lang.pick(
                format!("confira se o PostgreSQL está rodando, o host e a porta em [source] (o PEC no Windows usa 5433, aqui {port}), listen_addresses e o firewall"),
                format!("check that PostgreSQL runs, the host and port in [source] (PEC on Windows uses 5433, here {port}), listen_addresses and the firewall"),
            ),
            DbAuthFailed { user, .. } => lang.pick(
                format!("defina a senha de novo (como administrador: ALTER ROLE {user} PASSWORD '...';) e grave a mesma no arquivo de senha"),
                format!("set the password again (as an administrator: ALTER ROLE {user} PASSWORD '...';) and write the same into the password file"),
            ),
            DbNoHbaEntry { user, dbname, .. } => lang.pick(
                format!("acrescente ao pg_hba.conf a linha `host {dbname} {user} 127.0.0.1/32 scram-sha-256` (ou o endereço desta máquina) e recarregue: SELECT pg_reload_conf();"),
                format!("add to pg_hba.conf the line `host {dbname} {user} 127.0.0.1/32 scram-sha-256` (or this machine's address) and reload: SELECT pg_reload_conf();"),
            ),
            DbNoDatabase { .. } => lang.pick(
                "confira [source] dbname: o banco do PEC costuma se chamar esus".into(),
                "check [source] dbname: PEC's database is usually called esus".into(),
            ),
            DbError { .. } => lang.pick(
                "leia o erro acima; se persistir, envie esta saída à equipe central".into(),
                "read the error above; if it persists, send this output to the central team".into(),
            ),
            VersionTooOld { .. } => lang.pick(
                "atualize o PostgreSQL (o PEC traz o 9.6 ou mais novo)".into(),
                "upgrade PostgreSQL (PEC ships 9.6 or newer)".into(),
            ),
            VersionUntested { .. } => lang.pick(
                "deve funcionar; avise a equipe central para que esta versão seja testada".into(),
                "it should work; tell the central team so this version gets tested".into(),
            ),
            PecUnknown => lang.pick(
                "confira se [source] dbname aponta para o banco do PEC".into(),
                "check that [source] dbname points at PEC's database".into(),
            ),
            NoJobs => lang.pick(
                format!("inicie o serviço: ele busca o plano no coletor; depois rode o doctor de novo ({service})"),
                format!("start the service: it fetches the plan from the collector; then run the doctor again ({service})"),
            ),
            ReadDenied { object, user, .. } => match object {
                Some(o) => lang.pick(
                    format!("como administrador: GRANT SELECT ON {o} TO {user}; (ou rode o SQL de `transmissor-agent db-role --config {cfg}`)"),
                    format!("as an administrator: GRANT SELECT ON {o} TO {user}; (or run the SQL of `transmissor-agent db-role --config {cfg}`)"),
                ),
                None => lang.pick(
                    format!("como administrador, rode o SQL de `transmissor-agent db-role --config {cfg}`"),
                    format!("as an administrator, run the SQL of `transmissor-agent db-role --config {cfg}`"),
                ),
            },
            TableMissing { .. } => lang.pick(
                "o plano espera uma tabela que esta versão do PEC não tem: atualize o PEC ou avise a equipe central".into(),
                "the plan expects a table this PEC version lacks: update PEC or tell the central team".into(),
            ),
            QueryFailed { .. } => lang.pick(
                "avise a equipe central com esta saída".into(),
                "tell the central team, with this output".into(),
            ),
            CanWrite { role, access } => lang.pick(
                format!("como administrador: {}", access.fix(role)),
                format!("as an administrator: {}", access.fix(role)),
            ),
            MayWrite { role, access } => lang.pick(
                format!("se a função escreve, tire o acesso: {}", access.fix(role)),
                format!("if the routine writes, take the access away: {}", access.fix(role)),
            ),
            NotEnrolled { .. } | CertExpired { .. } => lang.pick(
                format!("peça um token novo à equipe central e cadastre: transmissor-agent enroll --config {cfg} --collector URL --token TOKEN --force"),
                format!("ask the central team for a new token and enroll: transmissor-agent enroll --config {cfg} --collector URL --token TOKEN --force"),
            ),
            IdentityUnreadable { .. } => lang.pick(
                format!("confira o dono e as permissões da pasta identity; se os arquivos se perderam, cadastre de novo (transmissor-agent enroll --config {cfg} ... --force)"),
                format!("check the owner and permissions of the identity folder; if the files are lost, enroll again (transmissor-agent enroll --config {cfg} ... --force)"),
            ),
            CertExpiring { .. } => lang.pick(
                format!("o serviço renova sozinho quando alcança o coletor: confira a conexão e o log ({service}); se não renovar, cadastre de novo"),
                format!("the service renews by itself when it reaches the collector: check the connection and its log ({service}); if it does not renew, enroll again"),
            ),
            CertNotYetValid { .. } | ClockSkewed { .. } => lang.pick(
                "acerte o relógio desta máquina e ative a sincronização (NTP: timedatectl set-ntp true; no Windows, w32tm /resync)".into(),
                "set this machine's clock and turn on synchronisation (NTP: timedatectl set-ntp true; on Windows, w32tm /resync)".into(),
            ),
            CollectorUnreachable { endpoint, .. } => lang.pick(
                format!("confira [collector] endpoint ({endpoint}), o DNS e se o firewall libera a saída TCP para essa porta"),
                format!("check [collector] endpoint ({endpoint}), DNS, and that the firewall lets outbound TCP reach that port"),
            ),
            CollectorNotTrusted { .. } => lang.pick(
                "confira [collector] endpoint: pode ser outro servidor, ou um proxy interceptando TLS (libere a conexão direta); se a equipe central trocou o coletor, cadastre de novo com um token novo".into(),
                "check [collector] endpoint: it may be another server, or a proxy intercepting TLS (allow a direct connection); if the central team replaced the collector, enroll again with a new token".into(),
            ),
            CollectorRefused { error, .. } => {
                let hint = crate::diagnose::hint(tonic::Code::Unknown, "", error);
                match hint {
                    Some(h) if lang == Lang::En => h.to_string(),
                    _ => lang.pick(
                        format!("peça à equipe central para conferir o agente; se foi revogado, cadastre de novo: transmissor-agent enroll --config {cfg} --collector URL --token TOKEN --force"),
                        format!("ask the central team to check this agent; if it was revoked, enroll again: transmissor-agent enroll --config {cfg} --collector URL --token TOKEN --force"),
                    ),
                }
            }
            PlanBehind { .. } => lang.pick(
                format!("nada, se o serviço estiver rodando ({service}); ele busca o plano novo sozinho"),
                format!("nothing, if the service runs ({service}); it fetches the new plan by itself"),
            ),
            PlanExpired { .. } => lang.pick(
                "avise a equipe central: ela precisa publicar um plano novo".into(),
                "tell the central team: they need to publish a new plan".into(),
            ),
            PlanRefused { .. } => lang.pick(
                "avise a equipe central com o motivo acima (chave de plano errada em [plan] keys, ou plano alterado)".into(),
                "tell the central team the reason above (a wrong plan key in [plan] keys, or an altered plan)".into(),
            ),
            PlanNone { .. } => lang.pick(
                format!("inicie o serviço ({service}): ele busca o plano no primeiro sinal ao coletor"),
                format!("start the service ({service}): it fetches the plan at its first heartbeat"),
            ),
            LocalJobs { .. } => lang.pick(
                "em produção, instale com a chave de plano da equipe central ([plan] keys)".into(),
                "in production, install with the central team's plan key ([plan] keys)".into(),
            ),
            SpoolNotWritable { dir, .. } => lang.pick(
                format!("dê à conta do serviço a posse da pasta (Linux: chown -R transmissor: {}) e confira se o disco não está montado só para leitura", dir.display()),
                format!("give the service account the folder (Linux: chown -R transmissor: {}) and check the disk is not mounted read-only", dir.display()),
            ),
            SpoolFull { .. } | SpoolLow { .. } => lang.pick(
                "libere espaço no disco, ou mova a fila para outro disco ([spool] dir) ou reduza [spool] max_bytes".into(),
                "free disk space, or move the spool to another disk ([spool] dir) or lower [spool] max_bytes".into(),
            ),
            ServiceNotInstalled { .. } => lang.pick(
                "rode o instalador (installer/README.md)".into(),
                "run the installer (installer/README.md)".into(),
            ),
            ServiceDisabled { name } => lang.pick(
                format!("habilite: systemctl enable --now {name} (Windows: Set-Service {name} -StartupType Automatic)"),
                format!("enable it: systemctl enable --now {name} (Windows: Set-Service {name} -StartupType Automatic)"),
            ),
            ServiceNotRunning { name, .. } => lang.pick(
                format!("veja o motivo em journalctl -u {name} -n 50 (Windows: o log em logs\\ da pasta de estado) e inicie: systemctl start {name} (Windows: Start-Service {name})"),
                format!("see why in journalctl -u {name} -n 50 (Windows: the log in the state folder's logs\\) and start it: systemctl start {name} (Windows: Start-Service {name})"),
            ),
            NoServiceManager => lang.pick(
                "garanta que algo reinicie o agente (o supervisor do contêiner, ou rode-o pelo systemd)".into(),
                "make sure something restarts the agent (the container's supervisor, or run it under systemd)".into(),
            ),
            SystemdOld { min, .. } => lang.pick(
                format!("atualize o sistema operacional (systemd {min} ou mais novo); até lá o agente roda com menos isolamento"),
                format!("upgrade the operating system (systemd {min} or newer); until then the agent runs less isolated"),
            ),
            SystemdUnknown { .. } => lang.pick(
                "confira com systemctl --version".into(),
                "check with systemctl --version".into(),
            ),
        })
    }
}

/// What the fixes name: the config file and how to see the service.
#[derive(Debug, Clone)]
pub struct FixContext {
    pub config: PathBuf,
    /// How to see the service's log and state, e.g. `systemctl status
    /// transmissor-agent`.
    pub service: String,
}
