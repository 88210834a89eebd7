//! The collector's configuration file: strict, versioned TOML.
//!
//! ```toml
//! version = 1
//! [server]
//! listen = "0.0.0.0:7443"
//! [tls]
//! ca_file = "/etc/transmissor/ca.pem"
//! cert_file = "/etc/transmissor/server.pem"
//! key_file = "/etc/transmissor/server.key"
//! [database]
//! url = "postgres://collector@127.0.0.1:5432/analytic"
//! password_file = "/etc/transmissor/db.password"
//! ```
//!
//! Secrets never live in the file itself: the database password comes from
//! `password_file` (which must not be readable by group or others) or from the
//! environment variable named by `password_env`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;
use thiserror::Error;

use transmissor_proto::limits;

mod caller_limits;
mod front_door;
pub use caller_limits::LimitsConfig;
use front_door::*;

pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "config {path}: version {found} is not supported (this collector reads version {CONFIG_VERSION})"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("config: {0}")]
    Invalid(String),
    #[error("database password: {0}")]
    Secret(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    pub version: u32,
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub load: LoadConfig,
    /// What one caller (or one connection) may take: transport limits,
    /// per-agent quotas and the reaper of abandoned transmissions.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The CA used for enrollment and renewal; without it, agents can only
    /// use certificates made by `dev-certs`.
    pub ca: Option<CaSection>,
    #[serde(default)]
    pub enrollment: EnrollmentConfig,
    #[serde(default)]
    pub plans: PlansConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// How each municipality's health is derived (thresholds).
    #[serde(default)]
    pub monitor: crate::monitor::Thresholds,
    /// Webhook alerts on each municipality's overall state (off without
    /// webhooks).
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
}

/// `[http]`: the HTTP side (probes, metrics, login, API; the dashboard
/// comes with issue #11). Off unless `listen` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTP(S) listener, e.g. `"0.0.0.0:8443"`.
    pub listen: Option<SocketAddr>,
    /// Plain HTTP instead of HTTPS (behind a TLS-terminating proxy only).
    #[serde(default)]
    pub plain: bool,
    /// Serve `/metrics` on this separate plain-HTTP address (e.g. an
    /// internal interface for Prometheus) instead of on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// A session ends after this long without a request.
    #[serde(default = "default_session_idle", with = "humantime_serde")]
    pub session_idle: Duration,
    /// ... and after this long in any case (log in again).
    #[serde(default = "default_session_lifetime", with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// Connections of the HTTP side's own pool.
    #[serde(default = "default_web_connections")]
    pub database_connections: u32,
    /// Connections one source may hold; one more is closed at once.
    #[serde(default = "default_per_source_connections")]
    pub max_connections_per_source: usize,
    /// Sources not counted per source (the reverse proxy's address).
    #[serde(default)]
    pub per_source_exempt: Vec<crate::tls::proxy_protocol::Cidr>,
    /// A connection's first byte must arrive within this.
    #[serde(default = "default_first_byte", with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// A connection moving no byte for this long is closed.
    #[serde(default = "default_http_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection is asked to close (gracefully) after this age.
    #[serde(default = "default_http_age", with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// A request's whole body must arrive within this.
    #[serde(default = "default_body_read", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// `[http.login]`: login budgets per source and name, and the Argon2 pool.
    #[serde(default)]
    pub login: crate::operators::guard::LoginLimits,
}

impl Default for HttpConfig {
    fn default() -> Self {
        toml::from_str("").expect("http defaults")
    }
}

fn default_session_idle() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_session_lifetime() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_web_connections() -> u32 {
    4
}

/// `[plans]`: central, signed extraction plans.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlansConfig {
    /// The central team's plan public keys (`ed25519:…`, as `transmissor-plan
    /// keygen` prints them). Required unless `allow_local_jobs` (a
    /// development collector, which then publishes and authorizes no plan).
    /// `plan publish` refuses an envelope these keys (moved along the
    /// published key lists) do not verify, and a stored plan that does not
    /// verify authorizes nothing. The collector never needs the signing
    /// key, and agents verify on their own whatever is set here.
    #[serde(default)]
    pub keys: Vec<transmissor_plan::PublicKey>,
    /// The central team's root key (`transmissor-plan keygen --root`), the
    /// only key key lists are accepted from. Unset, `plan publish` refuses
    /// key lists and the plan keys stay as `keys` pins them.
    #[serde(default)]
    pub root_key: Option<transmissor_plan::PublicKey>,
    /// Accept `Begin` for jobs that come from an agent's own config (no
    /// signed plan): development and tests only. Off, a job must be defined
    /// by a plan published for the caller's municipality.
    #[serde(default)]
    pub allow_local_jobs: bool,
    /// How often the published plans are re-read (another collector, or the
    /// CLI, may publish).
    #[serde(default = "default_plans_refresh", with = "humantime_serde")]
    pub refresh_every: Duration,
}

impl Default for PlansConfig {
    fn default() -> Self {
        toml::from_str("").expect("plans defaults")
    }
}

impl PlansConfig {
    /// The pinned keys, when any.
    pub fn trusted(&self) -> Option<crate::plans::PlanTrust> {
        (!self.keys.is_empty()).then(|| crate::plans::PlanTrust {
            keys: self.keys.iter().cloned().collect(),
            root: self.root_key,
        })
    }
}

fn default_plans_refresh() -> Duration {
    Duration::from_secs(5)
}

/// `[enrollment]`: limits of enrollment and renewal (identity hardening).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// Failed attempts per existing token id and window.
    #[serde(default = "default_failures_per_token")]
    pub max_failures_per_token: u32,
    /// Coarse limit of failed attempts per client address and window (0: off;
    /// behind a load balancer use the PROXY protocol or 0).
    #[serde(default = "default_failures_per_address")]
    pub max_failures_per_address: u32,
    #[serde(default = "default_failure_window", with = "humantime_serde")]
    pub failure_window: Duration,
    /// Renewals per agent and `renewal_window` (default: the certificate lifetime).
    #[serde(default = "default_max_renewals")]
    pub max_renewals: u32,
    #[serde(default, with = "humantime_serde")]
    pub renewal_window: Option<Duration>,
    /// How long a superseded certificate still authenticates (open
    /// connections finish their calls); never for `Renew`.
    #[serde(default = "default_superseded_grace", with = "humantime_serde")]
    pub superseded_grace: Duration,
    /// Revoke an agent whose identity renews from two keys (key theft).
    #[serde(default = "default_true")]
    pub revoke_on_parallel_renewal: bool,
    /// Connections of enrollment's own pool (apart from loads).
    #[serde(default = "default_enroll_connections")]
    pub database_connections: u32,
    /// Anonymous enrollments served at once (more are refused at once):
    /// keep it below `database_connections`, so a flood of them leaves
    /// connections to renewals.
    #[serde(default = "default_concurrent_enrollments")]
    pub max_concurrent_enrollments: u32,
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        toml::from_str("").expect("enrollment defaults")
    }
}

fn default_failures_per_token() -> u32 {
    5
}
fn default_failures_per_address() -> u32 {
    300
}
fn default_failure_window() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_max_renewals() -> u32 {
    4
}
fn default_superseded_grace() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_enroll_connections() -> u32 {
    2
}
fn default_concurrent_enrollments() -> u32 {
    1
}
fn default_max_connections_open() -> usize {
    16_384
}
fn default_max_handshakes() -> usize {
    256
}

/// `[server.proxy_protocol]`: PROXY protocol v1/v2 before TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Addresses or CIDR ranges allowed to send a header; connections from
    /// anywhere else are refused while enabled.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::tls::proxy_protocol::Cidr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// Directory made by `transmissor-collector ca init`.
    pub dir: PathBuf,
    /// Lifetime of agent certificates (municipal links go down for days).
    #[serde(default = "default_agent_cert_lifetime", with = "humantime_serde")]
    pub agent_cert_lifetime: Duration,
    /// Re-enrolling a municipality revokes its previous agents.
    #[serde(default = "default_true")]
    pub revoke_previous_on_enroll: bool,
    /// How far agent certificates' NotBefore is moved into the past, so an
    /// agent whose clock is a little behind can still use a new certificate.
    #[serde(default = "default_backdate", with = "humantime_serde")]
    pub not_before_backdate: Duration,
    /// Default validity of enrollment tokens.
    #[serde(default = "default_token_ttl", with = "humantime_serde")]
    pub token_ttl: Duration,
}

impl CaSection {
    /// Lifetimes within their bounds (`ca::MAX_AGENT_CERT_LIFETIME`,
    /// `ca::MAX_TOKEN_TTL`), the back-dating shorter than a lifetime.
    fn validate(&self) -> Result<(), ConfigError> {
        let days = |d: Duration| d.as_secs() / 86_400;
        if self.agent_cert_lifetime.is_zero()
            || self.agent_cert_lifetime > crate::ca::MAX_AGENT_CERT_LIFETIME
        {
            return Err(ConfigError::Invalid(format!(
                "ca.agent_cert_lifetime is {}; it must be above zero and at most {} days (a stolen agent key is usable that long)",
                humantime::format_duration(self.agent_cert_lifetime),
                days(crate::ca::MAX_AGENT_CERT_LIFETIME)
            )));
        }
        if self.token_ttl.is_zero() || self.token_ttl > crate::ca::MAX_TOKEN_TTL {
            return Err(ConfigError::Invalid(format!(
                "ca.token_ttl is {}; it must be above zero and at most {} days",
                humantime::format_duration(self.token_ttl),
                days(crate::ca::MAX_TOKEN_TTL)
            )));
        }
        if self.not_before_backdate >= self.agent_cert_lifetime {
            return Err(ConfigError::Invalid(
                "ca.not_before_backdate must be shorter than ca.agent_cert_lifetime".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address (mutual TLS).
    pub listen: SocketAddr,
    /// How long in-flight calls may take to finish on shutdown.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Connections are closed (gracefully) after this age, so load spreads
    /// across replicas and certificate changes take effect.
    #[serde(default = "default_conn_age", with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// How long a TLS handshake may take.
    #[serde(default = "default_handshake", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; further connections wait for a slot
    /// within `handshake_timeout`.
    #[serde(default = "default_max_handshakes")]
    pub max_concurrent_handshakes: usize,
    /// Connections open at once (handshaking, idle or busy); one more is
    /// closed as soon as it is accepted. Idle connections last at most
    /// `max_connection_age`.
    #[serde(default = "default_max_connections_open")]
    pub max_connections: usize,
    #[serde(default)]
    pub proxy_protocol: ProxyProtocolConfig,
    /// Connections one source (IPv4 address, IPv6 /64, PROXY client) may
    /// hold; one more is closed at once. See [`crate::tls::budget`].
    #[serde(default = "default_per_source_connections")]
    pub max_connections_per_source: usize,
    /// Sources not counted per source (a NAT egress of many municipalities).
    #[serde(default)]
    pub per_source_exempt: Vec<crate::tls::proxy_protocol::Cidr>,
    /// Handshakes one source may have in progress; one more is closed.
    #[serde(default = "default_per_source_handshakes")]
    pub max_handshakes_per_source: usize,
    /// The first bytes (ClientHello, PROXY header) must arrive within this.
    #[serde(default = "default_first_byte", with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// Connections without a client certificate (enrollment, probes).
    #[serde(default = "default_without_certificate")]
    pub max_connections_without_certificate: usize,
    /// ... and from one source.
    #[serde(default = "default_without_certificate_per_source")]
    pub max_connections_without_certificate_per_source: usize,
    /// ... closed after moving no byte for this long.
    #[serde(default = "default_without_certificate_idle", with = "humantime_serde")]
    pub idle_timeout_without_certificate: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) that sign agent certificates.
    pub ca_file: PathBuf,
    /// The collector's server certificate chain and key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL without a password.
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_acquire", with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// Schema that holds the target tables analysts read.
    #[serde(default = "default_target_schema")]
    pub target_schema: String,
    /// Largest decompressed batch accepted.
    #[serde(default = "default_max_batch")]
    pub max_batch_raw_bytes: ByteSize,
    /// Largest gRPC message accepted.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: ByteSize,
    /// Hash partitions by `_ibge` of a new snapshot target (fixed when the
    /// target is created; 1 to 256).
    #[serde(default = "default_target_partitions")]
    pub target_partitions: u16,
    /// Columns a target may grow to as municipalities bring new ones (1 to
    /// 1,500; PostgreSQL allows 1,600 per table, dropped ones included).
    #[serde(default = "default_max_target_columns")]
    pub max_target_columns: u16,
    /// How long a schema change (adding a column) waits for its brief
    /// exclusive lock before it gives way to readers and tries again.
    #[serde(default = "default_ddl_lock_timeout", with = "humantime_serde")]
    pub ddl_lock_timeout: Duration,
    /// How long a `Begin` keeps trying that lock before it answers
    /// `UNAVAILABLE` (the agent retries later, with backoff).
    #[serde(default = "default_ddl_retry_for", with = "humantime_serde")]
    pub ddl_retry_for: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            target_schema: default_target_schema(),
            max_batch_raw_bytes: default_max_batch(),
            max_message_bytes: default_max_message(),
            target_partitions: default_target_partitions(),
            max_target_columns: default_max_target_columns(),
            ddl_lock_timeout: default_ddl_lock_timeout(),
            ddl_retry_for: default_ddl_retry_for(),
        }
    }
}

fn default_agent_cert_lifetime() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_backdate() -> Duration {
    crate::pki::BACKDATE
}
fn default_true() -> bool {
    true
}
fn default_token_ttl() -> Duration {
    Duration::from_secs(72 * 3600)
}
fn default_drain() -> Duration {
    Duration::from_secs(30)
}
fn default_conn_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_handshake() -> Duration {
    Duration::from_secs(10)
}
fn default_max_connections() -> u32 {
    16
}
fn default_acquire() -> Duration {
    Duration::from_secs(10)
}
fn default_target_schema() -> String {
    "analytic".to_string()
}
fn default_max_batch() -> ByteSize {
    ByteSize::b(limits::DEFAULT_MAX_BATCH_RAW_BYTES)
}
fn default_target_partitions() -> u16 {
    16
}
fn default_max_target_columns() -> u16 {
    400
}
fn default_ddl_lock_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_ddl_retry_for() -> Duration {
    Duration::from_secs(30)
}
fn default_max_message() -> ByteSize {
    ByteSize::b(limits::DEFAULT_MAX_MESSAGE_BYTES as u64)
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            ConfigError::Version { found, .. } => ConfigError::Version {
                path: path.to_path_buf(),
                found,
            },
            other => other,
        })?;
        Ok(cfg.resolve_relative(path.parent().unwrap_or(Path::new("."))))
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        if cfg.version != CONFIG_VERSION {
            return Err(ConfigError::Version {
                path: PathBuf::new(),
                found: cfg.version,
            });
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_identity()?;
        self.monitor
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("monitor: {e}")))?;
        self.alerts
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.http.session_idle.is_zero() || self.http.session_lifetime < self.http.session_idle {
            return Err(ConfigError::Invalid(
                "http.session_idle must be above zero and at most http.session_lifetime".into(),
            ));
        }
        self.plans.validate()?;
        if self.plans.refresh_every < Duration::from_millis(100)
            || self.plans.refresh_every > Duration::from_secs(3600)
        {
            return Err(ConfigError::Invalid(
                "plans.refresh_every must be between 100ms and 1h".into(),
            ));
        }
        transmissor_proto::names::check_plain("load.target_schema", &self.load.target_schema)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.load.max_batch_raw_bytes.as_u64() < 1024 {
            return Err(ConfigError::Invalid(
                "load.max_batch_raw_bytes must be at least 1KiB".into(),
            ));
        }
        if !(1..=256).contains(&self.load.target_partitions) {
            return Err(ConfigError::Invalid(format!(
                "load.target_partitions is {}; it must be between 1 and 256",
                self.load.target_partitions
            )));
        }
        if !(1..=1500).contains(&self.load.max_target_columns) {
            return Err(ConfigError::Invalid(format!(
                "load.max_target_columns is {}; it must be between 1 and 1500",
                self.load.max_target_columns
            )));
        }
        let t = self.load.ddl_lock_timeout;
        if t < Duration::from_millis(10) || t > Duration::from_secs(10) {
            return Err(ConfigError::Invalid(
                "load.ddl_lock_timeout must be between 10ms and 10s: it is how long readers may queue behind a schema change".into(),
            ));
        }
        if self.load.ddl_retry_for < t {
            return Err(ConfigError::Invalid(
                "load.ddl_retry_for must be at least load.ddl_lock_timeout".into(),
            ));
        }
        self.limits
            .validate(self.load.max_batch_raw_bytes.as_u64())?;
        // postgres://user:password@host/... — the userinfo must not carry a password.
        let userinfo = self
            .database
            .url
            .split_once('@')
            .map(|(before, _)| before.rsplit("//").next().unwrap_or(before));
        if userinfo.is_some_and(|u| u.contains(':')) {
            return Err(ConfigError::Invalid(
                "database.url must not contain a password: use database.password_file or database.password_env".into(),
            ));
        }
        Ok(())
    }

    fn validate_identity(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.into()));
        front_door::validate(&self.server, &self.http).map_err(ConfigError::Invalid)?;
        if self.server.max_connections == 0 {
            return bad("server.max_connections must be at least 1");
        }
        if self.server.max_concurrent_handshakes == 0 {
            return bad("server.max_concurrent_handshakes must be at least 1");
        }
        let pp = &self.server.proxy_protocol;
        if pp.enabled && pp.trusted_proxies.is_empty() {
            return bad(
                "server.proxy_protocol.enabled needs trusted_proxies (the load balancers' addresses)",
            );
        }
        if let Some(ca) = &self.ca {
            ca.validate()?;
        }
        let e = &self.enrollment;
        if e.max_failures_per_token == 0 || e.max_renewals == 0 || e.database_connections == 0 {
            return bad(
                "enrollment: max_failures_per_token, max_renewals and database_connections must be at least 1",
            );
        }
        Ok(())
    }

    /// Relative file paths are relative to the config file's directory.
    fn resolve_relative(mut self, base: &Path) -> Self {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls.ca_file);
        fix(&mut self.tls.cert_file);
        fix(&mut self.tls.key_file);
        if let Some(p) = self.database.password_file.as_mut() {
            fix(p);
        }
        if let Some(ca) = self.ca.as_mut() {
            fix(&mut ca.dir);
        }
        self.alerts.resolve_relative(base);
        self
    }
}

impl DatabaseConfig {
    /// The password, from its file or environment variable (or none).
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        transmissor_proto::secret::from_file_or_env(
            self.password_file.as_deref(),
            self.password_env.as_deref(),
        )
        .map_err(|e| ConfigError::Secret(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
