//! Tests of [`super`]: slots in the municipality's zone, offsets, catch-up.
use super::*;

use crate::config::LocalTime;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const SP: Tz = chrono_tz::America::Sao_Paulo;

fn cron(expr: &str, jitter: Duration) -> Timing {
    Timing::Cron(transmissor_plan::Schedule::new(expr, jitter).unwrap())
}

#[test]
fn daily_in_sao_paulo_skips_weekend() {
    let cfg = ScheduleConfig {
        daily_at: vec![LocalTime(NaiveTime::from_hms_opt(2, 30, 0).unwrap())],
        weekdays_only: true,
        ..Default::default()
    };
    let s = Timing::from_config(&cfg).unwrap();
    // Friday 2026-11-20 10:00 UTC -> next is Monday 2026-11-23 02:30 -03:00.
    assert_eq!(
        s.next_after(utc("2026-11-20T10:00:00Z"), SP),
        Some(utc("2026-11-23T05:30:00Z"))
    );
    // Tuesday 01:00 local -> same day 02:30 local.
    assert_eq!(
        s.next_after(utc("2026-11-24T04:00:00Z"), SP),
        Some(utc("2026-11-24T05:30:00Z"))
    );
    // Sunday: the latest slot is Friday's.
    assert_eq!(
        s.latest_at_or_before(utc("2026-11-22T12:00:00Z"), SP),
        Some(utc("2026-11-20T05:30:00Z"))
    );
    // Exactly at a slot, the slot itself.
    assert_eq!(
        s.latest_at_or_before(utc("2026-11-24T05:30:00Z"), SP),
        Some(utc("2026-11-24T05:30:00Z"))
    );
}

#[test]
fn every_interval_on_multiples() {
    let cfg = ScheduleConfig {
        every: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    let s = Timing::from_config(&cfg).unwrap();
    assert_eq!(
        s.next_after(utc("2026-01-01T00:03:00Z"), SP),
        Some(utc("2026-01-01T00:10:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(utc("2026-01-01T00:13:00Z"), SP),
        Some(utc("2026-01-01T00:10:00Z"))
    );
    assert!(Timing::from_config(&ScheduleConfig::default()).is_none());
}

#[test]
fn cron_in_the_municipality_zone_with_a_stable_offset() {
    let t = cron("30 2 * * 1-5", Duration::from_secs(45 * 60));
    let manaus: Tz = chrono_tz::America::Manaus; // UTC-4
    assert_eq!(
        t.next_after(utc("2026-11-24T00:00:00Z"), manaus),
        Some(utc("2026-11-24T06:30:00Z"))
    );
    let a = JobClock::new("visitas", t.clone(), "3550308");
    let b = JobClock::new("visitas", t.clone(), "3304557");
    assert_eq!(
        a.offset,
        JobClock::new("visitas", t.clone(), "3550308").offset
    );
    assert!(a.offset < Duration::from_secs(45 * 60) && b.offset < Duration::from_secs(45 * 60));
    assert_ne!(a.offset, b.offset, "two municipalities, two offsets");
    let (slot, fires) = a.next_firing(utc("2026-11-24T00:00:00Z"), SP).unwrap();
    assert_eq!(slot, utc("2026-11-24T05:30:00Z"));
    assert_eq!(fires - slot, chrono::Duration::from_std(a.offset).unwrap());
}

fn ledger_after(clock: &JobClock, done: Option<&str>, known: &str) -> Ledger {
    let mut l = Ledger::default();
    l.jobs.insert(
        clock.job.clone(),
        JobRecord {
            known_since: Some(utc(known)),
            done_slot: done.map(utc),
            ..Default::default()
        },
    );
    l
}

#[test]
fn missed_slot_is_caught_up_once() {
    let clock = JobClock::new("j", cron("30 2 * * *", Duration::ZERO), "3550308");
    let jobs = [clock.clone()];
    // Done on Monday; the machine was off from Tuesday to Thursday noon.
    let mut l = ledger_after(&clock, Some("2026-11-23T05:30:00Z"), "2026-11-01T00:00:00Z");
    let now = utc("2026-11-26T15:00:00Z");
    let due = l.take_catch_up(&jobs, now, SP);
    assert_eq!(due, vec![("j".to_string(), utc("2026-11-26T05:30:00Z"))]);
    // Restarted again before that catch-up committed: not run twice.
    assert!(l.take_catch_up(&jobs, now, SP).is_empty());
    // A later slot, missed too, is caught up in its turn.
    let due = l.take_catch_up(&jobs, utc("2026-11-27T15:00:00Z"), SP);
    assert_eq!(due.len(), 1);
}

#[test]
fn failed_slot_is_caught_up_and_done_slot_is_not() {
    let clock = JobClock::new("j", cron("30 2 * * *", Duration::ZERO), "3550308");
    let jobs = [clock.clone()];
    let now = utc("2026-11-26T15:00:00Z");
    // Attempted today but failed: caught up.
    let mut l = ledger_after(&clock, Some("2026-11-25T05:30:00Z"), "2026-11-01T00:00:00Z");
    l.attempted("j", utc("2026-11-26T05:30:00Z"));
    assert_eq!(l.take_catch_up(&jobs, now, SP).len(), 1);
    // Committed today: nothing to catch up.
    let mut l = ledger_after(&clock, Some("2026-11-26T05:30:00Z"), "2026-11-01T00:00:00Z");
    assert!(l.take_catch_up(&jobs, now, SP).is_empty());
}

#[test]
fn a_new_job_waits_for_its_next_slot() {
    let clock = JobClock::new("j", cron("30 2 * * *", Duration::ZERO), "3550308");
    let mut l = Ledger::default();
    let now = utc("2026-11-26T15:00:00Z");
    l.sync_jobs(std::slice::from_ref(&clock), now);
    assert!(
        l.take_catch_up(std::slice::from_ref(&clock), now, SP)
            .is_empty()
    );
    // Tomorrow, after the slot passed while the agent was off: caught up.
    assert_eq!(
        l.take_catch_up(&[clock], utc("2026-11-27T15:00:00Z"), SP)
            .len(),
        1
    );
}

#[test]
fn the_offset_delays_firing() {
    let clock = JobClock::new(
        "j",
        cron("30 2 * * *", Duration::from_secs(3600)),
        "3550308",
    );
    let slot = utc("2026-11-26T05:30:00Z");
    let fires = slot + chrono::Duration::from_std(clock.offset).unwrap();
    // Just before this agent's firing time, the latest fired slot is yesterday's.
    let before = fires - chrono::Duration::seconds(1);
    assert_eq!(
        clock.latest_fired(before, SP),
        Some(utc("2026-11-25T05:30:00Z"))
    );
    assert_eq!(clock.latest_fired(fires, SP), Some(slot));
}

#[test]
fn ledger_round_trips_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let clock = JobClock::new("j", cron("30 2 * * *", Duration::ZERO), "3550308");
    let mut l = Ledger::default();
    l.sync_jobs(&[clock], utc("2026-11-26T15:00:00Z"));
    l.committed("j", utc("2026-11-26T05:30:00Z"));
    l.save(dir.path()).unwrap();
    assert_eq!(Ledger::load(dir.path()).unwrap(), l);
    assert_eq!(
        Ledger::load(&dir.path().join("absent")).unwrap(),
        Ledger::default()
    );
}
