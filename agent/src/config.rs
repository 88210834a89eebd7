//! The agent's configuration file: strict, versioned TOML.
//!
//! ```toml
//! version = 1
//! [agent]
//! state_dir = "/var/lib/transmissor-agent"
//! [source]
//! host = "127.0.0.1"
//! port = 5433
//! dbname = "esus"
//! user = "transmissor_leitura"
//! password_file = "/etc/transmissor-agent/source.password"
//! [collector]
//! endpoint = "https://coletor.example.gov.br:7443"
//! # ca_file / cert_file / key_file: default to the identity written by
//! # `transmissor-agent enroll` (<state_dir>/identity/{trust.pem,agent.pem,agent.key})
//! [heartbeat]
//! interval = "60s"          # jittered by ±20%
//! [schedule]
//! daily_at = ["02:30"]
//! [[jobs]]
//! name = "visitas"
//! mode = "snapshot"
//! target = "tb_fat_visita_domiciliar"
//! query = "SELECT * FROM tb_fat_visita_domiciliar"
//! ```
//!
//! The collector's TLS files are normally left out: `enroll` stores the
//! agent's key, certificate chain and the collector's trust bundle under
//! `<state_dir>/identity/` and renewal replaces them there. Explicit paths
//! (e.g. development certificates) are still honoured, and renewal then
//! writes to those paths.
//!
//! The source password comes from `password_file` (owner-only permissions)
//! or the environment variable named by `password_env`; never from the
//! command line, and it never reaches a log (it is not part of `Debug`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use thiserror::Error;

use transmissor_proto::limits;
use transmissor_proto::names::check_plain;

mod time;
pub mod upload;
pub use time::{LocalTime, TimeZone};
pub use upload::{Rate, UploadConfig};

pub const CONFIG_VERSION: u32 = 1;

/// Sub-directory of `agent.state_dir` holding the enrolled identity.
pub const IDENTITY_DIR: &str = "identity";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
    #[error("source password: {0}")]
    Secret(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub version: u32,
    pub agent: AgentSection,
    pub source: SourceConfig,
    pub collector: CollectorEndpoint,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    /// Prometheus metrics on a local port (off unless `listen` is set).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Bandwidth caps of the uploads by time of day ([`upload`]).
    #[serde(default)]
    pub upload: UploadConfig,
    /// Central mode: the plan keys pinned at install.
    #[serde(default)]
    pub plan: PlanConfig,
    /// Local jobs (development and the demo): allowed only when no plan key
    /// is pinned.
    #[serde(default)]
    pub jobs: Vec<JobConfig>,
}

/// `[plan]`: central, signed extraction plans. With at least one key the
/// agent is in **central mode**: it runs only SQL from a plan signed by one
/// of these keys (or by a key a key list signed by `root_key` moved trust
/// to), and local `[[jobs]]` are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Plan public keys, `ed25519:<base64>`, as `transmissor-plan keygen`
    /// prints them.
    #[serde(default)]
    pub keys: Vec<transmissor_plan::PublicKey>,
    /// The central team's root key (`transmissor-plan keygen --root`): the
    /// only key whose key lists (plan-key rotation, the floor of plan
    /// versions) this agent accepts. Unset, no key list is ever accepted
    /// and the plan keys stay as pinned here.
    #[serde(default)]
    pub root_key: Option<transmissor_plan::PublicKey>,
}

/// Where the agent's SQL comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSourceMode {
    /// Only from verified, signed central plans.
    Central,
    /// From the config's `[[jobs]]` (no plan key pinned).
    Local,
}

impl std::fmt::Display for JobSourceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Central => "central (signed plans only)",
            Self::Local => "local ([[jobs]] of this config; development only)",
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Where the agent keeps its state (the spool lives in `<state_dir>/spool`).
    pub state_dir: PathBuf,
    /// The municipality this agent believes it serves (informational: the
    /// collector trusts only the certificate and refuses a mismatch).
    #[serde(default)]
    pub ibge: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Limit for each job's query.
    #[serde(default = "default_statement_timeout", with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// The agent never waits long for a lock on the municipal server.
    #[serde(default = "default_lock_timeout", with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// `text` (default): COPY text. `binary`: COPY binary for the jobs
    /// whose every column has a binary form the analytic server reads back,
    /// text for the others. Binary is cheaper for both servers to produce
    /// and parse, but on the PEC tables it is ~1.5× larger before
    /// compression and ~1.2× after, so text was faster end to end on
    /// loopback and on a 20 Mbit/s link (BENCHMARKS.md).
    #[serde(default)]
    pub copy_format: CopyFormatChoice,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyFormatChoice {
    #[default]
    Text,
    Binary,
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password_file", &self.password_file)
            .field("password_env", &self.password_env)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorEndpoint {
    /// `https://host:port` of the collector.
    pub endpoint: String,
    /// Name to verify in the collector's certificate (default: the host).
    pub server_name: Option<String>,
    /// CA bundle the collector is verified against (default:
    /// `<state_dir>/identity/trust.pem`).
    pub ca_file: Option<PathBuf>,
    /// The agent's certificate chain (default: `<state_dir>/identity/agent.pem`).
    pub cert_file: Option<PathBuf>,
    /// The agent's private key (default: `<state_dir>/identity/agent.key`).
    pub key_file: Option<PathBuf>,
    /// Batches uploaded concurrently per job.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(default = "default_max_message")]
    pub max_message_bytes: ByteSize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Default: `<state_dir>/spool`.
    pub dir: Option<PathBuf>,
    /// The spool never grows past this; extraction stops (loudly) instead.
    #[serde(default = "default_spool_max")]
    pub max_bytes: ByteSize,
    /// Raw size at which a batch is cut (at a row boundary).
    #[serde(default = "default_batch")]
    pub batch_raw_bytes: ByteSize,
    /// `"auto"` (default): chosen per batch from the measured link and
    /// compression speeds (`pipeline::level`); a number (1 to 19, or a fast
    /// negative level -7 to -1) forces it.
    #[serde(default)]
    pub zstd_level: ZstdLevel,
}

/// `spool.zstd_level`: `"auto"` or a forced level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZstdLevel {
    #[default]
    Auto,
    Fixed(i32),
}

impl ZstdLevel {
    /// The forced levels a config may name.
    pub const RANGE: std::ops::RangeInclusive<i32> = -7..=19;
}

impl<'de> Deserialize<'de> for ZstdLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Level(i64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "auto" => Ok(Self::Auto),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "zstd_level = {w:?}: use \"auto\" or a level from -7 to 19 (not 0)"
            ))),
            Raw::Level(l) => i32::try_from(l)
                .ok()
                .filter(|l| Self::RANGE.contains(l) && *l != 0)
                .map(Self::Fixed)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "zstd_level = {l}: use \"auto\" or a level from -7 to 19 (not 0)"
                    ))
                }),
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: default_spool_max(),
            batch_raw_bytes: default_batch(),
            zstd_level: ZstdLevel::Auto,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub initial: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub max: Duration,
    /// After this long without progress, a run stops retrying; what was
    /// extracted stays in the spool and is sent by the next run.
    #[serde(default = "default_give_up", with = "humantime_serde")]
    pub give_up_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial: default_retry_initial(),
            max: default_retry_max(),
            give_up_after: default_give_up(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Local times ("HH:MM") of the daily runs of local jobs.
    #[serde(default)]
    pub daily_at: Vec<LocalTime>,
    /// The municipality's IANA time zone, in which every schedule (local
    /// jobs' and the plan's) is read (default America/Sao_Paulo).
    #[serde(default)]
    pub timezone: TimeZone,
    /// Run on Monday to Friday only.
    #[serde(default)]
    pub weekdays_only: bool,
    /// Alternatively, a fixed interval between runs (e.g. "1h").
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
    /// An operator's run-now request for a job that started less than this
    /// ago is dropped (logged), so requests cannot run a job back to back.
    #[serde(default = "default_run_now_min_interval", with = "humantime_serde")]
    pub run_now_min_interval: Duration,
}

fn default_run_now_min_interval() -> Duration {
    Duration::from_secs(10 * 60)
}

/// `[metrics]`: `listen = "127.0.0.1:9464"` serves `/metrics` (Prometheus
/// text, plain HTTP, no login: keep it on loopback or a management network;
/// it holds no personal data, only job names, counts and sizes).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Mean time between heartbeats of the long-running agent (each wait is
    /// drawn within ±20% of it).
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval: default_heartbeat(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Snapshot,
    Append,
    /// Merged by `key`; only rows changed since the committed watermark
    /// (minus `lookback`) are extracted.
    Upsert,
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Append => "append",
            Self::Upsert => "upsert",
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub name: String,
    pub mode: Mode,
    pub target: String,
    pub query: String,
    /// Mode `upsert`: the result columns that identify a row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    /// Mode `upsert`: the `timestamp`/`timestamptz` result column set when a
    /// row is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Mode `upsert`: how far before the committed watermark to read again.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub lookback: Option<Duration>,
}

impl JobConfig {
    /// A snapshot or append job (no upsert fields).
    pub fn new(name: &str, mode: Mode, target: &str, query: &str) -> Self {
        Self {
            name: name.into(),
            mode,
            target: target.into(),
            query: query.into(),
            key: Vec::new(),
            watermark: None,
            lookback: None,
        }
    }

    /// The upsert fields, checked: all of them with mode `upsert`, none
    /// without.
    pub fn upsert(&self) -> Result<Option<UpsertJob>, String> {
        let set = !self.key.is_empty() || self.watermark.is_some() || self.lookback.is_some();
        match (&self.mode, &self.watermark, self.lookback) {
            (Mode::Upsert, Some(watermark), Some(lookback)) if !self.key.is_empty() => {
                Ok(Some(UpsertJob {
                    key: self.key.clone(),
                    watermark: watermark.clone(),
                    lookback,
                }))
            }
            (Mode::Upsert, ..) => Err(format!(
                "job {:?}: mode \"upsert\" needs key, watermark and lookback",
                self.name
            )),
            _ if set => Err(format!(
                "job {:?}: key, watermark and lookback are only for mode \"upsert\"",
                self.name
            )),
            _ => Ok(None),
        }
    }
}

/// An upsert job's key, watermark column and lookback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertJob {
    pub key: Vec<String>,
    pub watermark: String,
    pub lookback: Duration,
}

fn default_pg_port() -> u16 {
    5432
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_statement_timeout() -> Duration {
    Duration::from_secs(3600)
}
fn default_lock_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_in_flight() -> usize {
    4
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_max_message() -> ByteSize {
    ByteSize::b(limits::DEFAULT_MAX_MESSAGE_BYTES as u64)
}
fn default_spool_max() -> ByteSize {
    ByteSize::gib(10)
}
fn default_batch() -> ByteSize {
    ByteSize::b(limits::DEFAULT_BATCH_RAW_BYTES)
}
fn default_retry_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(60)
}
fn default_give_up() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(60)
}

impl AgentConfig {
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
            return Err(ConfigError::Invalid(format!(
                "version {} is not supported (this agent reads version {CONFIG_VERSION})",
                cfg.version
            )));
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let inv = |s: String| Err(ConfigError::Invalid(s));
        // Durations must stay in a sane range: a huge value would overflow
        // date arithmetic later, and a zero interval would spin.
        const SECOND: Duration = Duration::from_secs(1);
        const DAY: Duration = Duration::from_secs(86_400);
        let mut bounded: Vec<(&str, Duration, Duration, Duration)> = vec![
            (
                "source.connect_timeout",
                self.source.connect_timeout,
                SECOND,
                DAY,
            ),
            (
                "source.statement_timeout",
                self.source.statement_timeout,
                SECOND,
                7 * DAY,
            ),
            (
                "source.lock_timeout",
                self.source.lock_timeout,
                Duration::from_millis(1),
                DAY,
            ),
            (
                "collector.connect_timeout",
                self.collector.connect_timeout,
                SECOND,
                DAY,
            ),
            (
                "collector.request_timeout",
                self.collector.request_timeout,
                SECOND,
                DAY,
            ),
            (
                "retry.initial",
                self.retry.initial,
                Duration::from_millis(1),
                DAY,
            ),
            ("retry.max", self.retry.max, Duration::from_millis(1), DAY),
            (
                "retry.give_up_after",
                self.retry.give_up_after,
                SECOND,
                30 * DAY,
            ),
            ("heartbeat.interval", self.heartbeat.interval, SECOND, DAY),
        ];
        if let Some(every) = self.schedule.every {
            bounded.push(("schedule.every", every, SECOND, 31 * DAY));
        }
        for (name, value, min, max) in bounded {
            if value < min || value > max {
                return inv(format!(
                    "{name} = {} is out of range ({} to {})",
                    humantime::format_duration(value),
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ));
            }
        }
        if let Some(root) = &self.plan.root_key {
            if self.plan.keys.is_empty() {
                return inv("plan.root_key is set without plan.keys: pin the plan keys too (the root key signs key lists only)".into());
            }
            if self.plan.keys.contains(root) {
                return inv(format!(
                    "plan.root_key {} is also in plan.keys: the root key must be kept apart from the keys that sign plans",
                    root.key_id()
                ));
            }
        }
        match self.job_source() {
            JobSourceMode::Central => {
                if !self.jobs.is_empty() {
                    return inv("plan.keys is set, so this agent runs only signed central plans: remove the [[jobs]] entries (local jobs are for development, without plan keys)".into());
                }
                if !self.schedule.daily_at.is_empty() || self.schedule.every.is_some() {
                    return inv("plan.keys is set: each job's schedule comes from the plan; remove schedule.daily_at and schedule.every (schedule.timezone stays: it is the municipality's)".into());
                }
            }
            JobSourceMode::Local => {
                if self.jobs.is_empty() {
                    return inv("no job to run: set plan.keys (central mode) or add [[jobs]] entries (development)".into());
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for j in &self.jobs {
            check_plain("job name", &j.name).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            check_plain("job target", &j.target)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if !names.insert(&j.name) {
                return inv(format!("job {:?} is defined twice", j.name));
            }
            if j.query.trim().is_empty() {
                return inv(format!("job {:?} has an empty query", j.name));
            }
            j.upsert().map_err(ConfigError::Invalid)?;
        }
        if self.spool.batch_raw_bytes.as_u64() < 1024
            || self.spool.batch_raw_bytes.as_u64() > limits::DEFAULT_MAX_BATCH_RAW_BYTES
        {
            return inv(format!(
                "spool.batch_raw_bytes must be between 1KiB and {}",
                ByteSize::b(limits::DEFAULT_MAX_BATCH_RAW_BYTES)
            ));
        }
        // A capped batch must fit in one call's timeout, even incompressible.
        let batch = self.spool.batch_raw_bytes.as_u64() as f64;
        let budget = self.collector.request_timeout.as_secs_f64() / 2.0;
        for rate in std::iter::once(self.upload.default_limit)
            .chain(self.upload.windows.iter().map(|w| w.limit))
        {
            if let Some(bps) = rate.bytes_per_s()
                && batch / bps as f64 > budget
            {
                return inv(format!(
                    "upload limit {rate} is too low for batches of {}: one could take {:.0} s, more than half of collector.request_timeout ({}); lower spool.batch_raw_bytes or raise the limit or the timeout",
                    self.spool.batch_raw_bytes,
                    batch / bps as f64,
                    humantime::format_duration(self.collector.request_timeout)
                ));
            }
        }
        if self.collector.in_flight == 0 || self.collector.in_flight > 64 {
            return inv("collector.in_flight must be between 1 and 64".into());
        }
        if !self.collector.endpoint.starts_with("https://") {
            return inv("collector.endpoint must start with https://".into());
        }
        if self.retry.initial.is_zero() || self.retry.max < self.retry.initial {
            return inv("retry.initial must be > 0 and <= retry.max".into());
        }
        if self.heartbeat.interval < Duration::from_secs(1) {
            return inv("heartbeat.interval must be at least 1s".into());
        }
        Ok(())
    }

    fn resolve_relative(mut self, base: &Path) -> Self {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.agent.state_dir);
        for p in [
            &mut self.collector.ca_file,
            &mut self.collector.cert_file,
            &mut self.collector.key_file,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        if let Some(p) = self.source.password_file.as_mut() {
            fix(p);
        }
        if let Some(p) = self.spool.dir.as_mut() {
            fix(p);
        }
        self
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.spool
            .dir
            .clone()
            .unwrap_or_else(|| self.agent.state_dir.join("spool"))
    }

    /// Where `enroll` keeps the agent's identity: `<state_dir>/identity`.
    pub fn identity_dir(&self) -> PathBuf {
        self.agent.state_dir.join(IDENTITY_DIR)
    }

    /// The agent's certificate chain: `collector.cert_file` or the identity's.
    pub fn cert_file(&self) -> PathBuf {
        (self.collector.cert_file.clone()).unwrap_or_else(|| self.identity_dir().join("agent.pem"))
    }

    /// The agent's private key: `collector.key_file` or the identity's.
    pub fn key_file(&self) -> PathBuf {
        (self.collector.key_file.clone()).unwrap_or_else(|| self.identity_dir().join("agent.key"))
    }

    /// The collector's trust bundle: `collector.ca_file` or the identity's.
    pub fn ca_file(&self) -> PathBuf {
        (self.collector.ca_file.clone()).unwrap_or_else(|| self.identity_dir().join("trust.pem"))
    }

    /// Central (plan keys pinned) or local mode.
    pub fn job_source(&self) -> JobSourceMode {
        if self.plan.keys.is_empty() {
            JobSourceMode::Local
        } else {
            JobSourceMode::Central
        }
    }

    /// Where accepted plans, key lists and the schedule's state live.
    pub fn plan_dir(&self) -> PathBuf {
        self.agent.state_dir.join("plan")
    }

    /// Version string of the local job definitions, sent with each transmission.
    pub fn plan_version(&self) -> String {
        sha2_lite::plan_version_of(&self.jobs)
    }
}

impl SourceConfig {
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        transmissor_proto::secret::from_file_or_env(
            self.password_file.as_deref(),
            self.password_env.as_deref(),
        )
        .map_err(|e| ConfigError::Secret(e.to_string()))
    }
}

mod sha2_lite {
    //! Plan version: a short stable hash of the job definitions.
    use super::JobConfig;

    pub fn plan_version_of(jobs: &[JobConfig]) -> String {
        let json = serde_json::to_string(jobs).unwrap_or_default();
        format!("config:{:08x}", crc32c_of(json.as_bytes()))
    }

    fn crc32c_of(b: &[u8]) -> u32 {
        transmissor_proto::checksum::crc32c(b)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
