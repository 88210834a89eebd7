//! What to do about a finding, in one line, in Portuguese or English: the
//! command, the SQL or the setting, named exactly.

use std::path::PathBuf;

use super::finding::Finding;
use super::lang::Lang;

impl Finding {
    /// What to do about it (None when nothing is to be done).
    pub fn fix(&self, lang: Lang, ctx: &FixContext) -> Option<String> {
        use Finding::*;
        let cfg = ctx.config.display();
        let service = &ctx.service;
        Some(match self {
            NotChecked { .. } | Skipped | NotApplicable => return None,
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
                // `object` and `user` are quoted identifiers (database.rs).
                Some(o) => {
                    let privilege = if o.starts_with("SCHEMA ") { "USAGE" } else { "SELECT" };
                    lang.pick(
                        format!("como administrador: GRANT {privilege} ON {o} TO {user}; (ou rode o SQL de `transmissor-agent db-role --config {cfg}`)"),
                        format!("as an administrator: GRANT {privilege} ON {o} TO {user}; (or run the SQL of `transmissor-agent db-role --config {cfg}`)"),
                    )
                }
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
                format!("veja o motivo em journalctl -u {name} -n 50 (Windows: o log em C:\\ProgramData\\transmissor\\logs) e inicie: systemctl start {name} (Windows: Start-Service {name})"),
                format!("see why in journalctl -u {name} -n 50 (Windows: the log in C:\\ProgramData\\transmissor\\logs) and start it: systemctl start {name} (Windows: Start-Service {name})"),
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
