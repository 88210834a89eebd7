//! The dashboard's two languages: Portuguese first, English available.
//! Every visible string comes from the one table [`T`]; states and reasons
//! use their own `pt_br()` texts; times are shown in Brasília time.
//!
//! The language is `?lang=pt|en` (remembered in the `lang` cookie), else the
//! cookie, else Portuguese.

use chrono::{DateTime, Utc};
use chrono_tz::America::Sao_Paulo;

use crate::monitor::{Connectivity, DataState, HealthState, Overall, Reason};

/// The cookie that remembers the language.
pub const COOKIE: &str = "lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Pt,
    En,
}

impl Lang {
    /// `pt` or `en`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pt" | "pt-BR" | "pt-br" => Some(Self::Pt),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Pt => "pt",
            Self::En => "en",
        }
    }

    /// The `lang` attribute of the page.
    pub fn html_lang(self) -> &'static str {
        match self {
            Self::Pt => "pt-BR",
            Self::En => "en",
        }
    }

    pub fn t(self, key: T) -> &'static str {
        key.get(self)
    }

    /// An overall state's label.
    pub fn state(self, s: Overall) -> &'static str {
        match self {
            Self::Pt => s.pt_br(),
            Self::En => s.as_str(),
        }
    }

    pub fn reason(self, r: &Reason) -> String {
        match self {
            Self::Pt => r.pt_br(),
            Self::En => r.to_string(),
        }
    }

    /// A stored state name of any axis (`on_time`, `offline`, ...) as a
    /// label; an unknown name is shown as it is.
    pub fn state_name(self, name: &str) -> String {
        let pt = match self {
            Self::En => return name.replace('_', " "),
            Self::Pt => pt_state_name(name),
        };
        pt.map_or_else(|| name.to_string(), str::to_string)
    }

    /// A transmission's state (`open`, `committed`, `failed`, `aborted`).
    pub fn outcome(self, name: &str) -> String {
        let key = match name {
            "open" => T::OutcomeOpen,
            "committed" => T::OutcomeCommitted,
            "failed" => T::OutcomeFailed,
            "aborted" => T::OutcomeAborted,
            "refused" => T::OutcomeRefused,
            other => return other.to_string(),
        };
        self.t(key).to_string()
    }

    /// An operator's role.
    pub fn role(self, role: crate::operators::Role) -> &'static str {
        use crate::operators::Role;
        self.t(match role {
            Role::Viewer => T::RoleViewer,
            Role::Operator => T::RoleOperator,
            Role::Admin => T::RoleAdmin,
        })
    }

    /// A stored axis name (`connectivity`, `data`, `health`, `overall`).
    pub fn axis(self, name: &str) -> &'static str {
        match name {
            "connectivity" => self.t(T::AxisConnectivity),
            "data" => self.t(T::AxisData),
            "health" => self.t(T::AxisHealth),
            "overall" => self.t(T::AxisOverall),
            _ => "?",
        }
    }

    /// An absolute time in Brasília time: `dd/mm/yyyy HH:MM` (pt) or
    /// `yyyy-mm-dd HH:MM` (en).
    pub fn time(self, t: DateTime<Utc>) -> String {
        let local = t.with_timezone(&Sao_Paulo);
        match self {
            Self::Pt => local.format("%d/%m/%Y %H:%M").to_string(),
            Self::En => local.format("%Y-%m-%d %H:%M").to_string(),
        }
    }

    /// A day (`dd/mm` or `mm-dd`), for chart labels.
    pub fn day(self, d: chrono::NaiveDate) -> String {
        match self {
            Self::Pt => d.format("%d/%m/%Y").to_string(),
            Self::En => d.format("%Y-%m-%d").to_string(),
        }
    }

    /// How long ago (or from now) `t` is, coarse: `há 3 h`, `em 12 d`.
    pub fn relative(self, t: DateTime<Utc>, now: DateTime<Utc>) -> String {
        let secs = (now - t).num_seconds();
        let (future, secs) = (secs < 0, secs.unsigned_abs());
        let amount = if secs < 60 {
            return self.t(T::JustNow).to_string();
        } else if secs < 3600 {
            format!("{} min", secs / 60)
        } else if secs < 2 * 86_400 {
            format!("{} h", secs / 3600)
        } else {
            format!("{} d", secs / 86_400)
        };
        match (self, future) {
            (Self::Pt, false) => format!("há {amount}"),
            (Self::Pt, true) => format!("em {amount}"),
            (Self::En, false) => format!("{amount} ago"),
            (Self::En, true) => format!("in {amount}"),
        }
    }

    /// A whole number with thousands separators (`1.234.567` / `1,234,567`).
    pub fn number(self, n: i64) -> String {
        let sep = match self {
            Self::Pt => '.',
            Self::En => ',',
        };
        let digits = n.unsigned_abs().to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
        if n < 0 {
            out.push('-');
        }
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(sep);
            }
            out.push(c);
        }
        out
    }

    /// Bytes in binary units (`12,0 MiB` / `12.0 MiB`).
    pub fn bytes(self, n: i64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = n as f64;
        let mut unit = 0;
        while v.abs() >= 1024.0 && unit < units.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        let text = if unit == 0 {
            format!("{n} B")
        } else {
            format!("{v:.1} {}", units[unit])
        };
        match self {
            Self::Pt => text.replace('.', ","),
            Self::En => text,
        }
    }

    /// Seconds with one decimal (`12,5 s`).
    pub fn seconds(self, s: f64) -> String {
        let text = format!("{s:.1} s");
        match self {
            Self::Pt => text.replace('.', ","),
            Self::En => text,
        }
    }
}

fn pt_state_name(name: &str) -> Option<&'static str> {
    const OVERALL: [Overall; 8] = Overall::ALL;
    const CONNECTIVITY: [Connectivity; 4] = [
        Connectivity::Online,
        Connectivity::Offline,
        Connectivity::Inactive,
        Connectivity::Never,
    ];
    const DATA: [DataState; 3] = [DataState::OnTime, DataState::Late, DataState::Missing];
    const HEALTH: [HealthState; 3] = [HealthState::Ok, HealthState::Degraded, HealthState::Failing];
    OVERALL
        .iter()
        .find(|s| s.as_str() == name)
        .map(|s| s.pt_br())
        .or_else(|| {
            CONNECTIVITY
                .iter()
                .find(|s| s.as_str() == name)
                .map(|s| s.pt_br())
        })
        .or_else(|| DATA.iter().find(|s| s.as_str() == name).map(|s| s.pt_br()))
        .or_else(|| {
            HEALTH
                .iter()
                .find(|s| s.as_str() == name)
                .map(|s| s.pt_br())
        })
}

/// The table: one key per visible string, its Portuguese and English text.
macro_rules! table {
    ($($key:ident => $pt:literal, $en:literal;)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum T {
            $($key,)+
        }

        impl T {
            pub fn get(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $(
                        (Self::$key, Lang::Pt) => $pt,
                        (Self::$key, Lang::En) => $en,
                    )+
                }
            }
        }

        #[cfg(test)]
        pub(super) const ALL_KEYS: &[T] = &[$(T::$key,)+];
    };
}

table! {
    Brand => "transmissor", "transmissor";
    NavOverview => "Visão geral", "Overview";
    NavFailures => "Falhas recentes", "Recent failures";
    Logout => "Sair", "Log out";
    OtherLang => "English", "Português";
    TimesNote => "Horários de Brasília (UTC−3).", "Times in Brasília time (UTC−3).";
    LoginTitle => "Entrar", "Log in";
    LoginName => "Nome", "Name";
    LoginPassword => "Senha", "Password";
    LoginSubmit => "Entrar", "Log in";
    LoginWrong => "Nome ou senha incorretos.", "Wrong name or password.";
    LoginThrottled => "Tentativas demais. Tente de novo mais tarde.", "Too many attempts. Try again later.";
    LoginBusy => "Muitos acessos agora. Tente de novo em instantes.", "Too many logins right now. Try again in a moment.";
    OverviewTitle => "Municípios", "Municipalities";
    All => "Todos", "All";
    FilterState => "Estado", "State";
    FilterUf => "UF", "State (UF)";
    FilterQ => "Nome ou IBGE", "Name or IBGE code";
    FilterSubmit => "Filtrar", "Filter";
    FilterClear => "Limpar", "Clear";
    Shown => "exibidos", "shown";
    Of => "de", "of";
    MunicipalitiesWord => "municípios", "municipalities";
    EvaluatedAt => "Avaliado em", "Evaluated at";
    ColState => "Estado", "State";
    ColUf => "UF", "UF";
    ColName => "Município", "Municipality";
    ColLastSuccess => "Último envio", "Last success";
    ColRows => "Linhas", "Rows";
    ColTrend => "30 dias", "30 days";
    ColAgent => "Agente", "Agent";
    ColPec => "PEC", "PEC";
    ColCert => "Certificado", "Certificate";
    SparkLabel => "Linhas por dia, últimos 30 dias", "Rows per day, last 30 days";
    NoRows => "Nenhum município com esses filtros.", "No municipality matches these filters.";
    Never => "nunca", "never";
    JustNow => "agora", "just now";
    Ibge => "IBGE", "IBGE";
    Since => "desde", "since";
    AxisConnectivity => "Conectividade", "Connectivity";
    AxisData => "Dados", "Data";
    AxisHealth => "Saúde", "Health";
    AxisOverall => "Geral", "Overall";
    Reasons => "Motivos", "Reasons";
    NoReasons => "Nada a fazer.", "Nothing to do.";
    ChartRows => "Linhas recebidas por dia (90 dias)", "Rows received per day (90 days)";
    ChartDuration => "Duração dos envios por dia, em segundos (90 dias)", "Transmission time per day, in seconds (90 days)";
    ChartEmpty => "Sem envios nos últimos 90 dias.", "No transmissions in the last 90 days.";
    FailedDay => "dia com falha", "day with a failure";
    History => "Histórico de estados", "State history";
    NoHistory => "Nenhuma mudança registrada.", "No change recorded.";
    ColWhen => "Quando", "When";
    ColAxis => "Eixo", "Axis";
    ColChange => "Mudança", "Change";
    ColReason => "Motivo", "Reason";
    RecentErrors => "Erros recentes", "Recent errors";
    NoErrors => "Nenhum erro recente.", "No recent error.";
    RecentTransmissions => "Envios recentes", "Recent transmissions";
    NoTransmissions => "Nenhum envio.", "No transmission.";
    ColJob => "Rotina", "Job";
    ColTarget => "Destino", "Target";
    ColMode => "Modo", "Mode";
    ColOutcome => "Resultado", "Outcome";
    ColStarted => "Início", "Started";
    ColDuration => "Duração", "Duration";
    ColBytes => "Bytes (bruto / comprimido)", "Bytes (raw / compressed)";
    ColPlan => "Plano", "Plan";
    ColError => "Erro", "Error";
    NoErrorText => "sem mensagem de erro", "no error text";
    Agents => "Agente", "Agent";
    NoAgents => "Nenhum agente cadastrado.", "No agent enrolled.";
    AgentVersion => "Versão do agente", "Agent version";
    PecVersion => "Versão do PEC", "PEC version";
    PlanVersion => "Versão do plano", "Plan version";
    PlanStatus => "Situação do plano", "Plan status";
    JobSource => "Origem das rotinas", "Jobs from";
    CertExpiry => "Certificado expira", "Certificate expires";
    LastHeartbeat => "Último sinal", "Last heartbeat";
    Hostname => "Computador", "Hostname";
    Os => "Sistema", "OS";
    Spool => "Fila local (spool)", "Local spool";
    Doctor => "Diagnóstico (doctor)", "Doctor";
    DoctorNever => "nunca executado", "never run";
    DoctorCounts => "aprovados / avisos / falhas", "passed / warnings / failures";
    EnrolledAt => "Cadastrado em", "Enrolled";
    RevokedAt => "Revogado em", "Revoked";
    Revoke => "Revogar agente", "Revoke agent";
    RevokeReason => "Motivo da revogação", "Reason for revoking";
    RevokeConfirm => "Revogar este agente? Ele deixará de enviar dados até ser cadastrado de novo.", "Revoke this agent? It stops sending data until enrolled again.";
    RevokeDone => "Agente revogado.", "Agent revoked.";
    RevokeFailed => "A revogação falhou", "Revoking failed";
    RunNow => "Executar agora", "Run now";
    RunNowHint => "O agente recebe o pedido no próximo sinal (heartbeat) e executa as rotinas do plano assinado; pedidos não recebidos em 24 horas expiram.", "The agent receives the request with its next heartbeat and runs the signed plan's jobs; requests not received within 24 hours expire.";
    RunJob => "Rotina", "Job";
    AllJobs => "Todas as rotinas", "Every job";
    RunNowButton => "Pedir execução agora", "Ask to run now";
    RunNowConfirm => "Pedir ao agente que execute agora, fora do horário?", "Ask the agent to run now, outside its schedule?";
    RunNowDone => "Pedido registrado; o agente o recebe no próximo sinal.", "Request stored; the agent receives it with its next heartbeat.";
    RunNowFailed => "O pedido falhou", "The request failed";
    RunRequests => "Pedidos de execução", "Run requests";
    ColRequestedBy => "Pedido por", "Requested by";
    ColStatus => "Situação", "Status";
    RequestPending => "aguardando o agente", "waiting for the agent";
    RequestTaken => "recebido pelo agente", "taken by the agent";
    RequestExpired => "expirou sem ser recebido", "expired, never taken";
    FailuresTitle => "Falhas recentes no país", "Recent failures across the country";
    NoFailures => "Nenhuma falha recente.", "No recent failure.";
    NotFound => "Município não encontrado", "Municipality not found";
    NotFoundText => "Nenhum município com este código IBGE.", "No municipality has this IBGE code.";
    BadQuery => "Filtro inválido", "Invalid filter";
    Back => "Voltar à visão geral", "Back to the overview";
    Unknown => "—", "—";
    RoleViewer => "leitura", "viewer";
    RoleOperator => "operador", "operator";
    RoleAdmin => "administrador", "admin";
    OutcomeOpen => "em andamento", "open";
    OutcomeCommitted => "concluído", "committed";
    OutcomeFailed => "falhou", "failed";
    OutcomeAborted => "abortado", "aborted";
    OutcomeRefused => "recusado", "refused";
    Expired => "expirado", "expired";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_both_texts() {
        for key in ALL_KEYS {
            assert!(!key.get(Lang::Pt).is_empty(), "{key:?}");
            assert!(!key.get(Lang::En).is_empty(), "{key:?}");
        }
        assert_eq!(Lang::Pt.t(T::NavFailures), "Falhas recentes");
        assert_eq!(Lang::En.t(T::NavFailures), "Recent failures");
    }

    #[test]
    fn times_are_in_brasilia() {
        let t = "2025-03-10T15:04:00Z".parse().unwrap();
        assert_eq!(Lang::Pt.time(t), "10/03/2025 12:04");
        assert_eq!(Lang::En.time(t), "2025-03-10 12:04");
        let now = "2025-03-10T18:04:00Z".parse().unwrap();
        assert_eq!(Lang::Pt.relative(t, now), "há 3 h");
        assert_eq!(Lang::En.relative(t, now), "3 h ago");
        assert_eq!(Lang::Pt.relative(now, t), "em 3 h");
    }

    #[test]
    fn numbers_and_states() {
        assert_eq!(Lang::Pt.number(1_234_567), "1.234.567");
        assert_eq!(Lang::En.number(-1000), "-1,000");
        assert_eq!(Lang::En.number(999), "999");
        assert_eq!(Lang::Pt.bytes(12 * 1024 * 1024), "12,0 MiB");
        assert_eq!(Lang::Pt.state(Overall::Offline), "sem contato");
        assert_eq!(Lang::Pt.state_name("on_time"), "em dia");
        assert_eq!(Lang::En.state_name("on_time"), "on time");
        assert_eq!(Lang::Pt.state_name("weird"), "weird");
        assert_eq!(Lang::Pt.outcome("aborted"), "abortado");
        assert_eq!(Lang::En.outcome("committed"), "committed");
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
    }
}
