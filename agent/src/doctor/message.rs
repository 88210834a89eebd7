//! The sentence saying what a check found, in Portuguese or English.
//! Details quoted from elsewhere (a PostgreSQL or TLS error) stay as the
//! other side wrote them.

use super::finding::Finding;
use super::lang::Lang;

/// Bytes for people: `1.5 GiB`.
fn size(b: u64) -> String {
    bytesize::ByteSize(b).display().iec().to_string()
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

impl Finding {
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
            NotApplicable => lang
                .pick("não se aplica a este sistema", "does not apply on this system")
                .into(),
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
}
