//! The notifier task: takes what the evaluator handed over, runs each
//! webhook's policy, renders and queues the messages for the webhook's
//! delivery worker; on stop, flushes within `flush_on_stop`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::{AlertsConfig, Format};
use super::deliver::{self, Webhook};
use super::message;
use super::policy::{Now, Out, Policy, Rules};
use super::{Inbox, Shared};

/// Messages queued per webhook for delivery, at most.
const DELIVERY_QUEUE: usize = 1000;

struct Hook {
    name: String,
    format: Format,
    policy: Policy,
    queue: mpsc::Sender<message::Outgoing>,
}

impl Hook {
    fn send(&self, outs: Vec<Out>, dashboard: Option<&str>, shared: &Shared) {
        for out in outs {
            let msg = message::render(&out, self.format, dashboard);
            let count = msg.count;
            if self.queue.try_send(msg).is_err() {
                shared.stats.count_dropped(1);
                tracing::warn!(webhook = %self.name, municipalities = count, "alert delivery queue full; message dropped");
            }
        }
    }

    fn handle(&mut self, inbox: &Inbox, now: Now, dashboard: Option<&str>, shared: &Shared) {
        self.policy.restore(&inbox.restore, now);
        let mut outs = self.policy.on_events(&inbox.events, now);
        outs.extend(self.policy.on_tick(now));
        self.send(outs, dashboard, shared);
    }
}

pub(super) async fn run(config: AlertsConfig, shared: Arc<Shared>, stop: CancellationToken) {
    if !config.enabled() {
        return;
    }
    let client = match deliver::client() {
        Ok(c) => c,
        Err(e) => {
            shared.open.store(false, Ordering::Release);
            tracing::error!(error = %e.without_url(), "alerts off: cannot build the HTTP client");
            return;
        }
    };
    let dashboard = config.dashboard_base();
    let abort = CancellationToken::new();
    let mut workers = JoinSet::new();
    let mut hooks = Vec::new();
    for (i, w) in config.webhooks.iter().enumerate() {
        let url = match w.resolve_url(i) {
            Ok(url) => url,
            Err(error) => {
                tracing::error!(webhook = %w.name, %error, "alert webhook left out");
                continue;
            }
        };
        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
        let hook = Webhook {
            name: w.name.clone(),
            url,
            timeout: w.timeout,
            max_attempts: w.max_attempts,
            retry_initial: w.retry_initial,
            retry_max: w.retry_max,
        };
        workers.spawn(deliver::worker(
            hook,
            client.clone(),
            rx,
            shared.stats.clone(),
            abort.clone(),
        ));
        hooks.push(Hook {
            name: w.name.clone(),
            format: w.format,
            policy: Policy::new(Rules::new(&config, w)),
            queue: tx,
        });
    }
    if hooks.is_empty() {
        shared.open.store(false, Ordering::Release);
        return;
    }
    tracing::info!(webhooks = hooks.len(), "alerts on");

    loop {
        let wake = hooks.iter().filter_map(|h| h.policy.next_wake()).min();
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = shared.wake.notified() => {}
            () = sleep_until(wake) => {}
        }
        let inbox = shared.take();
        let now = Now::current();
        for hook in &mut hooks {
            hook.handle(&inbox, now, dashboard.as_deref(), &shared);
        }
    }

    // Stop: the last pass handed over, then what is gathered, at once.
    shared.open.store(false, Ordering::Release);
    let inbox = shared.take();
    let now = Now::current();
    for hook in &mut hooks {
        hook.handle(&inbox, now, dashboard.as_deref(), &shared);
        let rest = hook.policy.flush();
        hook.send(rest, dashboard.as_deref(), &shared);
    }
    drop(hooks);
    let drained = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(config.flush_on_stop, drained)
        .await
        .is_err()
    {
        abort.cancel();
        while workers.join_next().await.is_some() {}
    }
    tracing::info!("alerts stopped");
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
