//! Webhook alerts on each municipality's overall state (issue #11): one
//! message per transition into an alerted state (and back to `ok`),
//! reminders while it lasts, a digest instead of a flood, a rate limit and
//! retries per webhook.
//!
//! | file                  | responsibility                                                   |
//! |-----------------------|------------------------------------------------------------------|
//! | `alerts/config.rs`    | `[alerts]`: webhooks (URL from file/env), states, limits, validated |
//! | `alerts/event.rs`     | [`AlertEvent`]: one overall-state change, as the evaluator hands it over |
//! | `alerts/policy.rs`    | per webhook: which events alert, reminders, digest window, rate limit (pure, time passed in) |
//! | `alerts/message.rs`   | bodies: Slack `text` + `attachments`, or generic JSON            |
//! | `alerts/deliver.rs`   | posting: one ordered worker per webhook, retries with backoff     |
//! | `alerts/notifier.rs`  | the task: inbox → policies → delivery queues; stop and flush     |
//! | `alerts/tests.rs`     | end-to-end tests against a real HTTP server                       |
//!
//! The evaluator calls [`Alerts::notify`] after each pass with that pass's
//! overall transitions; it never waits. Passes that arrive while the
//! notifier is busy are merged into one batch (coalesced, so nothing is
//! lost to a slow webhook); past [`MAX_PENDING_EVENTS`] waiting events the
//! newest are dropped, with a warning and [`AlertStats::dropped`].
//!
//! What is sent, when, and how a national outage becomes one digest is in
//! `policy.rs`. Nothing pending is kept across restarts: on stop, gathered
//! digests are sent at once and queued messages get `flush_on_stop` to go
//! out; the rest is lost. After a restart, [`Alerts::restore`] hands back
//! the current states so reminders continue (it sends nothing).

mod config;
mod deliver;
mod event;
mod message;
mod notifier;
mod policy;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{AlertsConfig, AlertsConfigError, Format, WebhookConfig};
pub use deliver::MAX_RETRY_AFTER;
pub use event::AlertEvent;
pub use message::DIGEST_LISTED;

use policy::Kind;

/// Events waiting for the notifier, at most (about nine passes over every
/// municipality).
pub const MAX_PENDING_EVENTS: usize = 50_000;

/// Counters for the metrics (register them as counters: they only grow).
#[derive(Debug, Default)]
pub struct AlertStats {
    sent: AtomicU64,
    digests: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

impl AlertStats {
    /// Messages accepted by a webhook (digests included).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    /// Digests accepted by a webhook.
    pub fn digests(&self) -> u64 {
        self.digests.load(Ordering::Relaxed)
    }
    /// Messages given up on (refused, or attempts exhausted).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// Events or messages dropped: inbox or a delivery queue full, or
    /// left undelivered at stop.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Attempts that failed and were retried.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn count_sent(&self, kind: Kind) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if kind == Kind::Digest {
            self.digests.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn count_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    fn count_dropped(&self, n: usize) {
        self.dropped
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
    fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
}

/// What waits for the notifier.
#[derive(Debug, Default)]
struct Inbox {
    restore: Vec<AlertEvent>,
    events: Vec<AlertEvent>,
}

#[derive(Debug, Default)]
struct Shared {
    inbox: Mutex<Inbox>,
    wake: Notify,
    /// Off: no webhook, or the notifier has ended; events are ignored.
    open: AtomicBool,
    stats: Arc<AlertStats>,
}

impl Shared {
    fn take(&self) -> Inbox {
        std::mem::take(&mut *self.inbox.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The handle to the notifier; cheap to clone.
#[derive(Debug, Clone)]
pub struct Alerts {
    shared: Arc<Shared>,
}

impl Alerts {
    /// Starts the notifier task (on the current Tokio runtime); it stops,
    /// after a flush bounded by `flush_on_stop`, when `stop` is cancelled.
    /// `config` is expected validated ([`AlertsConfig::validate`]); a
    /// webhook whose URL cannot be resolved is logged and left out
    /// ([`AlertsConfig::check_urls`] catches that before start-up). With no
    /// webhook, the task ends at once and the handle ignores events.
    pub fn spawn(config: AlertsConfig, stop: CancellationToken) -> (Alerts, JoinHandle<()>) {
        let shared = Arc::new(Shared::default());
        shared.open.store(config.enabled(), Ordering::Release);
        let task = tokio::spawn(notifier::run(config, shared.clone(), stop));
        (Alerts { shared }, task)
    }

    /// Hands over the transitions of one evaluation pass; never blocks
    /// (see the module doc for what happens when the notifier lags).
    pub fn notify(&self, events: Vec<AlertEvent>) {
        self.hand_over(events, false);
    }

    /// At start-up: the current non-`ok` states as stored, so reminders
    /// continue after a restart. Sends nothing by itself; call it before
    /// the first [`notify`](Self::notify).
    pub fn restore(&self, current: Vec<AlertEvent>) {
        self.hand_over(current, true);
    }

    /// The counters, for the metrics.
    pub fn stats(&self) -> Arc<AlertStats> {
        self.shared.stats.clone()
    }

    fn hand_over(&self, mut events: Vec<AlertEvent>, restore: bool) {
        if events.is_empty() || !self.shared.open.load(Ordering::Acquire) {
            return;
        }
        {
            let mut inbox = self
                .shared
                .inbox
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let waiting = inbox.events.len() + inbox.restore.len();
            let room = MAX_PENDING_EVENTS.saturating_sub(waiting);
            if events.len() > room {
                let dropped = events.len() - room;
                events.truncate(room);
                self.shared.stats.count_dropped(dropped);
                tracing::warn!(dropped, waiting, "alert notifier is behind; events dropped");
            }
            if restore {
                inbox.restore.append(&mut events);
            } else {
                inbox.events.append(&mut events);
            }
        }
        self.shared.wake.notify_one();
    }
}
