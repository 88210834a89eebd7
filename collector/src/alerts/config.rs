//! `[alerts]`: where alerts go and how often, strict and validated.
//!
//! ```toml
//! [alerts]
//! dashboard_url = "https://central.example/"   # messages link to <url>m/<ibge>
//! digest_threshold = 20
//! digest_window = "60s"
//! max_messages_per_minute = 30
//! flush_on_stop = "10s"
//! [[alerts.webhooks]]
//! name = "ops-slack"
//! url_file = "/etc/transmissor/slack.url"   # or url_env = "…", or url = "…"
//! format = "slack"                           # or "json"
//! states = ["failing", "late", "missing", "offline", "degraded", "ok"]
//! reminder_every = "4h"
//! timeout = "10s"
//! max_attempts = 6
//! retry_initial = "1s"
//! retry_max = "60s"
//! ```
//!
//! A webhook URL is a secret (whoever has it can post to the channel): it
//! is best kept in `url_file` (readable by its owner only) or `url_env`,
//! and it is never logged nor formatted into an error; logs name the
//! webhook by its `name`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use thiserror::Error;

use crate::monitor::Overall;

/// An invalid `[alerts]` value; `field` is its path under `alerts.`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("alerts.{field}: {message}")]
pub struct AlertsConfigError {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> AlertsConfigError {
    AlertsConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// `[alerts]`. The default has no webhooks: alerts are off.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// The dashboard's base URL; when set, every message links to
    /// `<dashboard_url>m/<ibge>` (a missing trailing `/` is added).
    #[serde(default)]
    pub dashboard_url: Option<String>,
    /// More messages than this for one webhook within one `digest_window`
    /// are sent as one digest. A pass of the evaluator that brings more
    /// than this many at once goes into a digest whole.
    #[serde(default = "default_digest_threshold")]
    pub digest_threshold: u32,
    /// The window opens with the first message sent to a webhook; while
    /// its count stays within `digest_threshold`, messages go out at once.
    /// Once it is exceeded, the rest of the window is gathered and sent as
    /// one digest when the window closes.
    #[serde(default = "default_digest_window", with = "humantime_serde")]
    pub digest_window: Duration,
    /// Per webhook, over any 60 seconds (counted when a message is let out
    /// to the delivery queue, a digest as one); what would exceed it is
    /// gathered into the window's digest instead, sent as soon as the limit
    /// allows. Keep it at least `digest_threshold`, or a pass within the
    /// threshold may already be partly digested.
    #[serde(default = "default_max_messages_per_minute")]
    pub max_messages_per_minute: u32,
    /// On stop, what is pending (gathered digests, queued messages, retries)
    /// is sent for at most this long; the rest is lost (nothing pending is
    /// kept across restarts).
    #[serde(default = "default_flush_on_stop", with = "humantime_serde")]
    pub flush_on_stop: Duration,
    /// Where alerts are posted; none: alerts are off.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            dashboard_url: None,
            digest_threshold: default_digest_threshold(),
            digest_window: default_digest_window(),
            max_messages_per_minute: default_max_messages_per_minute(),
            flush_on_stop: default_flush_on_stop(),
            webhooks: Vec::new(),
        }
    }
}

/// The body posted to a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Slack's incoming webhooks (`text` + `attachments`); Mattermost and
    /// Rocket.Chat read it too.
    #[default]
    Slack,
    /// A flat JSON object per message (`kind`: `transition`, `reminder`
    /// or `digest`), for other systems.
    Json,
}

/// `[[alerts.webhooks]]`: one destination.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Shown in logs instead of the URL; unique, `[A-Za-z0-9._-]`, at most
    /// 64 characters.
    pub name: String,
    /// The URL itself (`http://` or `https://`). Exactly one of `url`,
    /// `url_env` and `url_file` is set.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// A file holding the URL, readable by its owner only; relative to the
    /// config file's directory.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub format: Format,
    /// The overall states alerted on; `ok` means recoveries (sent only
    /// when the previous state was one of the others listed). The default:
    /// `failing`, `late`, `missing`, `offline`, `degraded`, `ok`.
    #[serde(default = "default_states")]
    pub states: Vec<Overall>,
    /// While a municipality stays in an alerted state, send a reminder this
    /// often (counted from when it entered the state). None: no reminders.
    #[serde(default, with = "humantime_serde")]
    pub reminder_every: Option<Duration>,
    /// One attempt's time limit (connect, send, answer).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per message, the first included. Connection errors,
    /// timeouts, 408, 429 and 5xx are retried; any other answer is final.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Backoff before the second attempt; it doubles each time, up to
    /// `retry_max`, and each wait is drawn at random below it (full
    /// jitter). A 429's `Retry-After` (seconds) is honoured instead.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
}

fn default_digest_threshold() -> u32 {
    20
}
fn default_digest_window() -> Duration {
    Duration::from_secs(60)
}
fn default_max_messages_per_minute() -> u32 {
    30
}
fn default_flush_on_stop() -> Duration {
    Duration::from_secs(10)
}
fn default_states() -> Vec<Overall> {
    vec![
        Overall::Failing,
        Overall::Late,
        Overall::Missing,
        Overall::Offline,
        Overall::Degraded,
        Overall::Ok,
    ]
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_attempts() -> u32 {
    6
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(60)
}

/// A webhook or dashboard URL must be `http://` or `https://` with a host.
/// The error never contains the URL.
pub(crate) fn check_url(field: &str, text: &str) -> Result<Url, AlertsConfigError> {
    let url =
        Url::parse(text.trim()).map_err(|e| invalid(field, format!("not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(field, "the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(field, "the URL has no host"));
    }
    Ok(url)
}

impl AlertsConfig {
    /// Alerts are on when at least one webhook is configured.
    pub fn enabled(&self) -> bool {
        !self.webhooks.is_empty()
    }

    /// Checks every value that does not need the environment or files
    /// (see [`check_urls`](Self::check_urls) for those).
    pub fn validate(&self) -> Result<(), AlertsConfigError> {
        if let Some(url) = &self.dashboard_url {
            check_url("dashboard_url", url)?;
        }
        if self.digest_threshold == 0 {
            return Err(invalid("digest_threshold", "must be at least 1"));
        }
        if self.digest_window < Duration::from_secs(1) || self.digest_window > HOUR {
            return Err(invalid("digest_window", "must be between 1s and 1h"));
        }
        if self.max_messages_per_minute == 0 {
            return Err(invalid("max_messages_per_minute", "must be at least 1"));
        }
        if self.flush_on_stop > Duration::from_secs(300) {
            return Err(invalid("flush_on_stop", "must be at most 5m"));
        }
        let mut names = HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            w.validate(i)?;
            if !names.insert(w.name.as_str()) {
                return Err(invalid(
                    format!("webhooks[{i}].name"),
                    format!("\"{}\" is used by another webhook", w.name),
                ));
            }
        }
        Ok(())
    }

    /// Resolves every webhook's URL (environment, file) and checks it, so a
    /// missing variable or unreadable file stops the start-up instead of
    /// disabling a webhook later.
    pub fn check_urls(&self) -> Result<(), AlertsConfigError> {
        self.webhooks
            .iter()
            .enumerate()
            .try_for_each(|(i, w)| w.resolve_url(i).map(drop))
    }

    /// `url_file`s relative to the config file's directory.
    pub fn resolve_relative(&mut self, base: &Path) {
        for w in &mut self.webhooks {
            if let Some(p) = w.url_file.as_mut().filter(|p| p.is_relative()) {
                *p = base.join(&*p);
            }
        }
    }

    /// The dashboard base, with its trailing `/`.
    pub(crate) fn dashboard_base(&self) -> Option<String> {
        let url = self.dashboard_url.as_deref()?.trim();
        Some(if url.ends_with('/') {
            url.to_string()
        } else {
            format!("{url}/")
        })
    }
}

const HOUR: Duration = Duration::from_secs(3600);

impl WebhookConfig {
    fn validate(&self, i: usize) -> Result<(), AlertsConfigError> {
        let field = |f: &str| format!("webhooks[{i}].{f}");
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(invalid(
                field("name"),
                "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-'",
            ));
        }
        let field = |f: &str| format!("webhooks[{i}].{f} (webhook \"{}\")", self.name);
        let sources = [
            self.url.is_some(),
            self.url_env.is_some(),
            self.url_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(invalid(
                field("url"),
                "set exactly one of url, url_env and url_file",
            ));
        }
        if let Some(url) = &self.url {
            check_url(&field("url"), url)?;
        }
        if self.url_env.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(field("url_env"), "must name a variable"));
        }
        if self.states.is_empty() {
            return Err(invalid(field("states"), "must list at least one state"));
        }
        if self
            .reminder_every
            .is_some_and(|r| r < Duration::from_secs(60))
        {
            return Err(invalid(field("reminder_every"), "must be at least 1m"));
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(300) {
            return Err(invalid(field("timeout"), "must be between 100ms and 5m"));
        }
        if !(1..=20).contains(&self.max_attempts) {
            return Err(invalid(field("max_attempts"), "must be between 1 and 20"));
        }
        if self.retry_initial.is_zero() || self.retry_initial > HOUR {
            return Err(invalid(
                field("retry_initial"),
                "must be above zero and at most 1h",
            ));
        }
        if self.retry_max < self.retry_initial || self.retry_max > HOUR {
            return Err(invalid(
                field("retry_max"),
                "must be at least retry_initial and at most 1h",
            ));
        }
        Ok(())
    }

    /// The URL from `url`, `url_env` or `url_file`, checked.
    pub(crate) fn resolve_url(&self, i: usize) -> Result<Url, AlertsConfigError> {
        let field = |f: &str| format!("webhooks[{i}].{f} (webhook \"{}\")", self.name);
        if let Some(url) = &self.url {
            return check_url(&field("url"), url);
        }
        let (name, text) = match (&self.url_file, &self.url_env) {
            (Some(file), _) => (
                "url_file",
                transmissor_proto::secret::from_file_or_env(Some(file), None),
            ),
            (None, Some(env)) => (
                "url_env",
                transmissor_proto::secret::from_file_or_env(None, Some(env)),
            ),
            (None, None) => return Err(invalid(field("url"), "no URL configured")),
        };
        match text {
            Ok(Some(text)) => check_url(&field(name), &text),
            Ok(None) => Err(invalid(field(name), "no URL configured")),
            Err(e) => Err(invalid(field(name), e.to_string())),
        }
    }

    /// Is `state` one this webhook alerts on (recoveries aside)?
    pub(crate) fn alerts_on(&self, state: Overall) -> bool {
        state != Overall::Ok && self.states.contains(&state)
    }

    /// Are recoveries (back to `ok`) sent?
    pub(crate) fn recoveries(&self) -> bool {
        self.states.contains(&Overall::Ok)
    }
}
