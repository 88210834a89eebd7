//! What to send, and when, for one webhook: pure, with the time passed in.
//!
//! - **Filter.** A transition into a state the webhook lists is sent; one
//!   back to `ok` is sent when `ok` is listed and the previous state was
//!   one the webhook alerts on. A first evaluation (`from: None`) into an
//!   alerted state is sent, into `ok` is not. A transition into a state
//!   not listed sends nothing and ends that municipality's reminders.
//! - **Reminders.** While a municipality stays in an alerted state, a
//!   reminder is due every `reminder_every` from when it entered it (for a
//!   restored state, counted from the stored transition time, so a restart
//!   neither repeats nor skips the cadence). Reminders due at the same
//!   moment form one batch, like a pass of the evaluator.
//! - **Digest window.** The first message opens a window of
//!   `digest_window`. Messages go out at once while the window's count stays
//!   within `digest_threshold`; a batch that would exceed it is held, and so
//!   is everything after it until the window closes, when what was held
//!   goes out as one digest. So a batch of at most the threshold (in a
//!   fresh window) gives exactly that many messages, and a larger batch
//!   (a national outage in one pass) exactly one digest.
//! - **Rate limit.** At most `max_messages_per_minute` messages per 60 s
//!   (a digest counts as one); a message over the limit is held for the
//!   window's digest, which waits, if need be, for the limit to allow it.
//!   A "digest" of one message is sent as that message.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::config::{AlertsConfig, WebhookConfig};
use super::event::AlertEvent;
use crate::monitor::Overall;

const MINUTE: Duration = Duration::from_secs(60);

/// The current time on both clocks: `mono` for timers, `wall` to place
/// stored transition times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub mono: Instant,
    pub wall: DateTime<Utc>,
}

impl Now {
    pub fn current() -> Self {
        Self {
            mono: Instant::now(),
            wall: Utc::now(),
        }
    }
}

/// The kind of a message, as the generic JSON body names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Transition,
    Reminder,
    Digest,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transition => "transition",
            Self::Reminder => "reminder",
            Self::Digest => "digest",
        }
    }
}

/// One municipality's message: a transition or a reminder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub kind: Kind,
    pub event: AlertEvent,
}

/// What to send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Out {
    One(Item),
    Digest(Vec<Item>),
}

/// The webhook's settings the policy needs.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    alerted: Vec<Overall>,
    recoveries: bool,
    reminder_every: Option<Duration>,
    threshold: usize,
    window: Duration,
    per_minute: usize,
}

impl Rules {
    pub fn new(alerts: &AlertsConfig, hook: &WebhookConfig) -> Self {
        Self {
            alerted: hook
                .states
                .iter()
                .copied()
                .filter(|s| hook.alerts_on(*s))
                .collect(),
            recoveries: hook.recoveries(),
            // A zero interval (only possible unvalidated) means none.
            reminder_every: hook.reminder_every.filter(|r| !r.is_zero()),
            threshold: (alerts.digest_threshold as usize).max(1),
            window: alerts.digest_window,
            per_minute: (alerts.max_messages_per_minute as usize).max(1),
        }
    }

    fn alerts_on(&self, state: Overall) -> bool {
        self.alerted.contains(&state)
    }
}

/// A municipality in an alerted state.
#[derive(Debug)]
struct Open {
    event: AlertEvent,
    next_reminder: Option<Instant>,
}

#[derive(Debug)]
struct Window {
    ends: Instant,
    count: usize,
    /// Once set, everything until the window closes is held.
    gathering: bool,
    held: Vec<Item>,
}

#[derive(Debug)]
pub(crate) struct Policy {
    rules: Rules,
    open: HashMap<String, Open>,
    window: Option<Window>,
    /// When recent messages were let out (the last 60 s, pruned lazily).
    sent: VecDeque<Instant>,
}

impl Policy {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            open: HashMap::new(),
            window: None,
            sent: VecDeque::new(),
        }
    }

    /// Municipalities currently in an alerted state.
    #[cfg(test)]
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Takes the current states as stored (after a restart): reminders
    /// continue, nothing is sent.
    pub fn restore(&mut self, current: &[AlertEvent], now: Now) {
        for event in current {
            if self.rules.alerts_on(event.to) {
                let next_reminder = self.rules.reminder_every.map(|every| {
                    let elapsed = (now.wall - event.at).to_std().unwrap_or(Duration::ZERO);
                    now.mono + until_next(every, elapsed)
                });
                self.open.insert(
                    event.ibge.clone(),
                    Open {
                        event: event.clone(),
                        next_reminder,
                    },
                );
            } else {
                self.open.remove(&event.ibge);
            }
        }
    }

    /// One batch of transitions (a pass of the evaluator).
    pub fn on_events(&mut self, events: &[AlertEvent], now: Now) -> Vec<Out> {
        let mut out = Vec::new();
        self.close_window(now.mono, &mut out);
        let mut items = Vec::new();
        for event in events {
            if event.from == Some(event.to) {
                continue;
            }
            if event.to == Overall::Ok {
                self.open.remove(&event.ibge);
                if self.rules.recoveries && event.from.is_some_and(|f| self.rules.alerts_on(f)) {
                    items.push(Item {
                        kind: Kind::Transition,
                        event: event.clone(),
                    });
                }
            } else if self.rules.alerts_on(event.to) {
                self.open.insert(
                    event.ibge.clone(),
                    Open {
                        event: event.clone(),
                        next_reminder: self.rules.reminder_every.map(|r| now.mono + r),
                    },
                );
                items.push(Item {
                    kind: Kind::Transition,
                    event: event.clone(),
                });
            } else {
                self.open.remove(&event.ibge);
            }
        }
        self.admit(items, now.mono, &mut out);
        out
    }

    /// Time passed: closes a due window, sends due reminders.
    pub fn on_tick(&mut self, now: Now) -> Vec<Out> {
        let mut out = Vec::new();
        self.close_window(now.mono, &mut out);
        let mut items = Vec::new();
        if let Some(every) = self.rules.reminder_every {
            for open in self.open.values_mut() {
                let Some(due) = open.next_reminder.filter(|due| *due <= now.mono) else {
                    continue;
                };
                items.push(Item {
                    kind: Kind::Reminder,
                    event: open.event.clone(),
                });
                // After a long stall, one reminder, then the cadence resumes.
                let next = due + every;
                open.next_reminder = Some(if next <= now.mono {
                    now.mono + every
                } else {
                    next
                });
            }
        }
        items.sort_by(|a, b| a.event.ibge.cmp(&b.event.ibge));
        self.admit(items, now.mono, &mut out);
        out
    }

    /// When [`on_tick`](Self::on_tick) has something to do.
    pub fn next_wake(&self) -> Option<Instant> {
        let window = self
            .window
            .as_ref()
            .filter(|w| !w.held.is_empty())
            .map(|w| match self.slot_frees_at() {
                Some(free) => w.ends.max(free),
                None => w.ends,
            });
        let reminder = self.open.values().filter_map(|o| o.next_reminder).min();
        window.into_iter().chain(reminder).min()
    }

    /// On stop: what is held goes out now, limits aside.
    pub fn flush(&mut self) -> Vec<Out> {
        self.window
            .take()
            .and_then(|w| gathered(w.held))
            .into_iter()
            .collect()
    }

    fn admit(&mut self, items: Vec<Item>, now: Instant, out: &mut Vec<Out>) {
        if items.is_empty() {
            return;
        }
        let window = self.rules.window;
        let w = self.window.get_or_insert_with(|| Window {
            ends: now + window,
            count: 0,
            gathering: false,
            held: Vec::new(),
        });
        w.count += items.len();
        if w.gathering || w.count > self.rules.threshold {
            w.gathering = true;
            w.held.extend(items);
            return;
        }
        for item in items {
            if !w.gathering && take_slot(&mut self.sent, now, self.rules.per_minute) {
                out.push(Out::One(item));
            } else {
                w.gathering = true;
                w.held.push(item);
            }
        }
    }

    fn close_window(&mut self, now: Instant, out: &mut Vec<Out>) {
        let Some(w) = &mut self.window else {
            return;
        };
        if now < w.ends {
            return;
        }
        if !w.held.is_empty() && !take_slot(&mut self.sent, now, self.rules.per_minute) {
            // The digest waits for the rate limit; the window keeps gathering.
            return;
        }
        if let Some(w) = self.window.take() {
            out.extend(gathered(w.held));
        }
    }

    /// When the rate limit next lets one message out, if it is reached.
    fn slot_frees_at(&self) -> Option<Instant> {
        let n = self.sent.len();
        (n >= self.rules.per_minute).then(|| self.sent[n - self.rules.per_minute] + MINUTE)
    }
}

/// What a window held, as one message (a digest unless it is one item).
fn gathered(mut held: Vec<Item>) -> Option<Out> {
    match held.len() {
        0 => None,
        1 => held.pop().map(Out::One),
        _ => Some(Out::Digest(held)),
    }
}

/// Takes one slot of the per-minute limit if one is free.
fn take_slot(sent: &mut VecDeque<Instant>, now: Instant, per_minute: usize) -> bool {
    while sent.front().is_some_and(|t| *t + MINUTE <= now) {
        sent.pop_front();
    }
    if sent.len() >= per_minute {
        return false;
    }
    sent.push_back(now);
    true
}

/// Time until the next multiple of `every` after `elapsed` (never zero).
fn until_next(every: Duration, elapsed: Duration) -> Duration {
    let every_ns = every.as_nanos().max(1);
    let left = every_ns - elapsed.as_nanos() % every_ns;
    Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX))
}
