//! Tests of [`super`]: the pure plan, and the schedule on a paused clock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_750_000_000_000;

fn week_from(nb: i64) -> Validity {
    Validity {
        not_before_ms: nb,
        not_after_ms: nb + 7 * DAY,
    }
}

#[test]
fn plan_picks_the_fraction_of_the_lifetime() {
    let v = week_from(T0);
    let ms = |d: Duration| d.as_millis() as i64;
    // Fresh certificate, correct clock: renew at 50% / 75% / clamped.
    assert_eq!(
        plan(v, T0, 0, 0.5),
        Plan::RenewIn(Duration::from_millis(84 * 3_600_000))
    );
    assert_eq!(
        plan(v, T0, 0, 0.75),
        Plan::RenewIn(Duration::from_millis(126 * 3_600_000))
    );
    assert_eq!(plan(v, T0, 0, 0.1), plan(v, T0, 0, 0.5));
    assert_eq!(plan(v, T0, 0, 0.99), plan(v, T0, 0, 0.75));
    // One day in.
    let Plan::RenewIn(d) = plan(v, T0 + DAY, 0, 0.6) else {
        panic!()
    };
    assert_eq!(ms(d), (7.0 * 0.6 * DAY as f64) as i64 - DAY);
    // Past the point: now. Past expiry: expired.
    assert_eq!(
        plan(v, T0 + 6 * DAY, 0, 0.75),
        Plan::RenewIn(Duration::ZERO)
    );
    assert_eq!(plan(v, T0 + 7 * DAY, 0, 0.75), Plan::Expired);
}

#[test]
fn plan_uses_the_collectors_time_not_the_wall_clock() {
    let v = week_from(T0);
    // The local clock is 3 days behind; the measured offset corrects it.
    let local = T0 + DAY - 3 * DAY;
    assert_eq!(plan(v, local, 3 * DAY, 0.5), plan(v, T0 + DAY, 0, 0.5));
    // Without the offset, a clock 10 days behind would "see" a fresh
    // certificate; with it, the certificate is expired.
    assert_eq!(plan(v, T0 - 2 * DAY, 10 * DAY, 0.5), Plan::Expired);
    // A clock ahead does not make it expire early.
    assert!(
        matches!(plan(v, T0 + 30 * DAY, -30 * DAY, 0.5), Plan::RenewIn(d) if d > Duration::ZERO)
    );
}

#[test]
fn remaining_fraction_and_messages() {
    let v = week_from(T0);
    assert_eq!(remaining_fraction(v, T0), 1.0);
    assert!((remaining_fraction(v, T0 + 7 * DAY - 7 * DAY / 10) - 0.1).abs() < 1e-9);
    assert_eq!(remaining_fraction(v, T0 + 8 * DAY), 0.0);
    let m = expired_message(v.not_after());
    assert_eq!(
        m,
        "the agent certificate expired at 2025-06-22T15:06:40Z; it cannot be renewed: enroll the agent again with a new token (transmissor-agent enroll --collector ... --token ...)"
    );
    for _ in 0..100 {
        let f = random_fraction();
        assert!((RENEW_FROM..=RENEW_UNTIL).contains(&f));
    }
}

/// A certificate lifecycle whose renewals are recorded, not sent.
struct Fake {
    clock: Arc<ClockSync>,
    validity: Mutex<Validity>,
    /// (certificate renewed, collector time of the successful call)
    renewals: Mutex<Vec<(Validity, i64)>>,
    failures_left: AtomicU32,
    refuse: bool,
    stop_after: usize,
    cancel: CancellationToken,
}

impl Fake {
    fn new(clock: Arc<ClockSync>, v: Validity, stop_after: usize) -> Self {
        Self {
            clock,
            validity: Mutex::new(v),
            renewals: Mutex::new(vec![]),
            failures_left: AtomicU32::new(0),
            refuse: false,
            stop_after,
            cancel: CancellationToken::new(),
        }
    }
}

impl Lifecycle for Fake {
    fn validity(&self) -> Validity {
        *self.validity.lock().unwrap()
    }

    async fn renew(&self) -> Result<(), RenewError> {
        if self.refuse {
            return Err(RenewError::Call(Box::new(Status::permission_denied(
                "agent revoked",
            ))));
        }
        if self.failures_left.load(Ordering::SeqCst) > 0 {
            self.failures_left.fetch_sub(1, Ordering::SeqCst);
            return Err(RenewError::Call(Box::new(Status::unavailable(
                "collector down",
            ))));
        }
        let now = self.clock.collector_now_ms();
        let old = self.validity();
        *self.validity.lock().unwrap() = week_from(now - 5 * 60_000);
        let mut r = self.renewals.lock().unwrap();
        r.push((old, now));
        if r.len() >= self.stop_after {
            self.cancel.cancel();
        }
        Ok(())
    }

    fn reload(&self) -> bool {
        false
    }
}

fn retry() -> RetryConfig {
    RetryConfig {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        give_up_after: Duration::from_secs(3600),
    }
}

#[tokio::test(start_paused = true)]
async fn renewals_fire_inside_the_window_on_a_paused_clock() {
    // The wall clock is two days behind the collector; the offset says so.
    let clock = Arc::new(ClockSync::anchored(T0 - 2 * DAY, 2 * DAY));
    let fake = Fake::new(clock.clone(), week_from(T0), 5);
    let status = AgentStatus::default();
    let started = tokio::time::Instant::now();
    schedule(&fake, &clock, &status, &retry(), &fake.cancel.clone()).await;

    let renewals = fake.renewals.lock().unwrap().clone();
    assert_eq!(renewals.len(), 5);
    for (v, at) in &renewals {
        let f = (at - v.not_before_ms) as f64 / v.lifetime_ms() as f64;
        assert!(
            (RENEW_FROM..=RENEW_UNTIL + 1e-6).contains(&f),
            "renewed at {f:.3} of the lifetime"
        );
    }
    // The first one happened 3.5 to 5.25 days of monotonic time after start.
    let first = renewals[0].1 - T0;
    assert!(
        (7 * DAY / 2..=7 * DAY * 3 / 4 + 1000).contains(&first),
        "{first}"
    );
    assert!(started.elapsed() >= Duration::from_millis(first as u64));
    assert!(status.certificate_warning().is_none());
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff() {
    let clock = Arc::new(ClockSync::anchored(T0, 0));
    let fake = Fake::new(clock.clone(), week_from(T0), 1);
    fake.failures_left.store(4, Ordering::SeqCst);
    let status = AgentStatus::default();
    schedule(&fake, &clock, &status, &retry(), &fake.cancel.clone()).await;
    let (v, at) = fake.renewals.lock().unwrap()[0];
    let f = (at - v.not_before_ms) as f64 / v.lifetime_ms() as f64;
    // Four retries add at most 1+2+4+8 seconds after the chosen point.
    assert!(
        f >= RENEW_FROM && at - v.not_before_ms <= 7 * DAY * 3 / 4 + 16_000,
        "{f}"
    );
}

#[tokio::test(start_paused = true)]
async fn near_expiry_warns_then_expiry_says_how_to_reenroll() {
    // 90% of the lifetime gone, and the collector refuses every renewal.
    let clock = Arc::new(ClockSync::anchored(T0 + 7 * DAY * 9 / 10, 0));
    let mut fake = Fake::new(clock.clone(), week_from(T0), 1);
    fake.refuse = true;
    let fake = Arc::new(fake);
    let status = Arc::new(AgentStatus::default());
    let task = {
        let (fake, clock, status) = (fake.clone(), clock.clone(), status.clone());
        tokio::spawn(async move {
            schedule(&*fake, &clock, &status, &retry(), &fake.cancel.clone()).await;
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let w = status.certificate_warning().unwrap();
    assert!(
        w.contains("renewal keeps failing") && w.contains("10% of its lifetime left"),
        "{w}"
    );
    assert!(w.contains("revoked"), "{w}");

    tokio::time::sleep(Duration::from_secs(86_400)).await;
    let w = status.certificate_warning().unwrap();
    assert_eq!(w, expired_message(week_from(T0).not_after()));
    fake.cancel.cancel();
    task.await.unwrap();
    assert!(fake.renewals.lock().unwrap().is_empty());
}
