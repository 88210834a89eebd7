//! Which slot of a job's schedule was last expected: the latest one whose
//! local date is a business day of the municipality.

use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use transmissor_plan::Schedule;

use super::calendar::Calendar;

/// How many slots (or skipped non-business days) are looked at before
/// giving up: more than the longest run of closed days a real calendar has.
pub const MAX_STEPS: usize = 60;

/// The latest slot of `schedule` at or before `now` whose local date (in
/// `tz`) is a business day of `calendar`; `None` when the schedule has no
/// slot in reach or [`MAX_STEPS`] steps found none.
///
/// A slot on a closed day moves the search to the end of the day before,
/// so an hourly schedule over a four-day Carnival costs four steps.
pub fn latest_expected_slot(
    schedule: &Schedule,
    tz: Tz,
    calendar: &Calendar,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut at = now;
    for _ in 0..MAX_STEPS {
        let slot = schedule.latest_at_or_before(at, tz)?;
        let date = slot.with_timezone(&tz).date_naive();
        if calendar.is_business_day(date) {
            return Some(slot);
        }
        // The first instant of that local day; when midnight falls in a
        // daylight-saving gap, step back slot by slot instead.
        let day_start = tz
            .from_local_datetime(&date.and_time(NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| *t <= slot)
            .unwrap_or(slot);
        at = day_start.checked_sub_signed(TimeDelta::seconds(1))?;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono_tz::America::Sao_Paulo;

    use super::*;

    /// Local São Paulo time (UTC−3) as UTC.
    fn sp(s: &str) -> DateTime<Utc> {
        let local: chrono::NaiveDateTime = s.parse().unwrap();
        Sao_Paulo
            .from_local_datetime(&local)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn schedule(cron: &str) -> Schedule {
        Schedule::new(cron, Duration::ZERO).unwrap()
    }

    #[test]
    fn business_days_only() {
        let cal = Calendar::new([chrono::NaiveDate::from_ymd_opt(2026, 3, 19).unwrap()].into());
        let daily = schedule("0 2 * * *");
        let hourly = schedule("0 * * * *");
        let weekly_monday = schedule("30 3 * * 1");
        let cases = [
            // (schedule, now, expected), local times.
            (&daily, "2026-03-13T10:00:00", Some("2026-03-13T02:00:00")), // Friday
            (&daily, "2026-03-14T10:00:00", Some("2026-03-13T02:00:00")), // Saturday
            (&daily, "2026-03-16T01:59:00", Some("2026-03-13T02:00:00")), // Monday, before the slot
            (&daily, "2026-03-16T02:00:00", Some("2026-03-16T02:00:00")), // at the slot
            (&daily, "2026-03-19T12:00:00", Some("2026-03-18T02:00:00")), // municipal holiday
            (&daily, "2026-02-18T01:00:00", Some("2026-02-13T02:00:00")), // after Carnival
            (&daily, "2026-04-06T01:00:00", Some("2026-04-02T02:00:00")), // after Good Friday
            (&daily, "2026-09-08T01:00:00", Some("2026-09-04T02:00:00")), // after a holiday Monday
            (&hourly, "2026-02-17T12:30:00", Some("2026-02-13T23:00:00")), // Carnival Tuesday
            (&hourly, "2026-02-18T00:30:00", Some("2026-02-18T00:00:00")), // Ash Wednesday
            (
                &weekly_monday,
                "2026-09-10T00:00:00",
                Some("2026-08-31T03:30:00"),
            ), // 7 Sep
        ];
        for (s, now, want) in cases {
            assert_eq!(
                latest_expected_slot(s, Sao_Paulo, &cal, sp(now)),
                want.map(sp),
                "{} at {now}",
                s.cron
            );
        }
    }

    #[test]
    fn gives_up_when_no_business_slot_is_in_reach() {
        // Only ever on 25 December.
        let christmas = schedule("0 2 25 12 *");
        let now = sp("2026-12-26T00:00:00");
        assert_eq!(
            latest_expected_slot(&christmas, Sao_Paulo, &Calendar::default(), now),
            None
        );
        // Every closed day of a year: none in reach.
        let all: std::collections::BTreeSet<_> = (0..400)
            .map(|i| chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(i))
            .collect();
        let daily = schedule("0 2 * * *");
        assert_eq!(
            latest_expected_slot(&daily, Sao_Paulo, &Calendar::new(all), now),
            None
        );
    }
}
