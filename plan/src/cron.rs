//! A strict parser and evaluator for standard 5-field cron expressions:
//! `minute hour day-of-month month day-of-week`, with `*`, lists, ranges,
//! steps (`*/15`, `1-5/2`), month names `jan`–`dec` and weekday names
//! `sun`–`sat` (0 and 7 are Sunday). When both day fields are restricted
//! a day matches either of them, as in Vixie cron.
//!
//! Why not a crate: the maintained ones (`croner`, `cron`) accept seconds,
//! years and extensions (`L`, `W`, `#`, `?`) that a plan should never carry,
//! `cron` numbers weekdays from 1 = Sunday, and their daylight-saving
//! behaviour and APIs changed between major versions. Plans are evaluated
//! on thousands of agents, so the exact meaning is kept here, small and
//! tested: anything outside standard cron is an error, never a guess.
//!
//! Time zones ([`CronExpr::next_after`], [`CronExpr::latest_at_or_before`]):
//! slots are local wall-clock times. A slot skipped by a daylight-saving
//! change fires at the first instant after the gap; a slot that occurs
//! twice fires once, at its first occurrence.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use thiserror::Error;

/// How far [`CronExpr::next_after`] looks ahead (covers `29 2` in any
/// 8-year window).
const FORWARD_DAYS: i64 = 8 * 366 + 2;

/// How far [`CronExpr::latest_at_or_before`] looks back.
pub const BACKWARD_DAYS: i64 = 400;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct CronError(String);

/// A parsed cron expression; `Display` gives back the text it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct CronExpr {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl CronExpr {
    pub fn parse(text: &str) -> Result<Self, CronError> {
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        }
        let minutes = parse_field(fields[0], &MINUTE)?;
        let hours = parse_field(fields[1], &HOUR)?;
        let days = parse_field(fields[2], &DAY)?;
        let months = parse_field(fields[3], &MONTH)?;
        let mut weekdays = parse_field(fields[4], &WEEKDAY)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Self {
            text: fields.join(" "),
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            days_restricted: !fields[2].starts_with('*'),
            weekdays_restricted: !fields[4].starts_with('*'),
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            _ => dom && dow,
        }
    }

    fn hours(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        (0..24).filter(|h| self.hours & (1 << h) != 0)
    }

    fn minutes(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        (0..60).filter(|m| self.minutes & (1 << m) != 0)
    }

    /// The first slot strictly after `after`, evaluated in `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let start = after.with_timezone(&tz).date_naive().pred_opt()?;
        for offset in 0..FORWARD_DAYS {
            let date = start.checked_add_signed(Duration::days(offset))?;
            if !self.day_matches(date) {
                continue;
            }
            for h in self.hours() {
                for m in self.minutes() {
                    let slot = instant(tz, date.and_hms_opt(h, m, 0)?)?;
                    if slot > after {
                        return Some(slot);
                    }
                }
            }
        }
        None
    }

    /// The most recent slot at or before `at`, evaluated in `tz`, looking
    /// back at most [`BACKWARD_DAYS`].
    pub fn latest_at_or_before(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let start = at.with_timezone(&tz).date_naive().succ_opt()?;
        for offset in 0..=BACKWARD_DAYS + 1 {
            let date = start.checked_sub_signed(Duration::days(offset))?;
            if !self.day_matches(date) {
                continue;
            }
            for h in self.hours().rev() {
                for m in self.minutes().rev() {
                    let slot = instant(tz, date.and_hms_opt(h, m, 0)?)?;
                    if slot <= at {
                        return Some(slot);
                    }
                }
            }
        }
        None
    }
}

/// The instant a local slot fires at: its first occurrence when the wall
/// clock repeats, the end of the gap when the wall clock skips it. This
/// mapping never decreases as the local time grows, which is what lets
/// the searches above stop at the first match.
fn instant(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            // In a gap: the first local minute after it that exists is the
            // moment of the change (time zones change on whole minutes).
            let mut probe = local;
            for _ in 0..24 * 60 {
                probe = probe.checked_add_signed(Duration::minutes(1))?;
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return Some(t.with_timezone(&Utc));
                }
            }
            None
        }
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

/// The set of values of one field, as a bit mask.
fn parse_field(text: &str, field: &Field) -> Result<u64, CronError> {
    let mut mask = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (lo, hi) = (value(a, field)?, value(b, field)?);
            if lo > hi {
                return Err(CronError(format!(
                    "{} range {range:?} runs backwards",
                    field.name
                )));
            }
            (lo, hi)
        } else {
            if step.is_some() {
                return Err(CronError(format!(
                    "{} {item:?}: a step needs a range or '*' before it (e.g. \"*/15\")",
                    field.name
                )));
            }
            let v = value(range, field)?;
            (v, v)
        };
        let step = match step {
            None => 1,
            Some(s) => match number(s) {
                Some(n) if n >= 1 && n <= field.max => n,
                _ => {
                    return Err(CronError(format!(
                        "{} step {s:?} must be a number from 1 to {}",
                        field.name, field.max
                    )));
                }
            },
        };
        let mut v = lo;
        while v <= hi {
            mask |= 1 << v;
            v += step;
        }
    }
    Ok(mask)
}

fn value(text: &str, field: &Field) -> Result<u32, CronError> {
    if let Some(n) = number(text) {
        if (field.min..=field.max).contains(&n) {
            return Ok(n);
        }
        return Err(CronError(format!(
            "{} {n} is out of range {}-{}",
            field.name, field.min, field.max
        )));
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        // Month names start at 1, weekday names at 0 (Sunday).
        return Ok(i as u32 + field.min);
    }
    Err(CronError(format!(
        "{} {:?} is not a number{}",
        field.name,
        text.chars().take(20).collect::<String>(),
        if field.names.is_empty() {
            ""
        } else {
            " or a name"
        }
    )))
}

fn number(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(s: &str) -> CronExpr {
        CronExpr::parse(s).unwrap()
    }

    #[test]
    fn parses_standard_forms() {
        let c = cron("*/15 2,4 1-10/3 jan-mar,DEC mon-fri");
        assert_eq!(c.minutes, (1 << 0) | (1 << 15) | (1 << 30) | (1 << 45));
        assert_eq!(c.hours, (1 << 2) | (1 << 4));
        assert_eq!(c.days, (1 << 1) | (1 << 4) | (1 << 7) | (1 << 10));
        assert_eq!(c.months, 0b1_0000_0000_1110);
        assert_eq!(c.weekdays, 0b011_1110);
        assert_eq!(cron("0 0 * * 7").weekdays, 1);
        assert_eq!(cron("0 0 * * 5-7").weekdays, 0b110_0001);
        assert_eq!(cron("  30   2 * *  1-5 ").to_string(), "30 2 * * 1-5");
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "61 2 * * *",
            "0 24 * * *",
            "0 0 0 * *",
            "0 0 32 * *",
            "0 0 * 13 *",
            "0 0 * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "5/10 * * * *",
            "a * * * *",
            "0 0 L * *",
            "0 0 ? * *",
            "0 0 * * 1#2",
            "@daily",
            "0 0 * * monday",
            "1,,2 * * * *",
            "-1 * * * *",
            "001 * * * *",
        ] {
            assert!(CronExpr::parse(bad).is_err(), "{bad:?}");
        }
        let e = CronExpr::parse("61 2 * * *").unwrap_err();
        assert_eq!(e.to_string(), "minute 61 is out of range 0-59");
    }

    #[test]
    fn slots_across_days_on_weekdays() {
        let c = cron("30 2 * * 1-5");
        let tz = chrono_tz::UTC;
        // 2026-11-27 is a Friday.
        let mut t = utc("2026-11-27T03:00:00Z");
        let mut seen = vec![];
        for _ in 0..3 {
            t = c.next_after(t, tz).unwrap();
            seen.push(t);
        }
        assert_eq!(
            seen,
            [
                utc("2026-11-30T02:30:00Z"),
                utc("2026-12-01T02:30:00Z"),
                utc("2026-12-02T02:30:00Z")
            ]
        );
        // Strictly after: a slot time itself moves on to the next one.
        assert_eq!(
            c.next_after(utc("2026-11-30T02:30:00Z"), tz),
            Some(utc("2026-12-01T02:30:00Z"))
        );
        // Latest at or before, across the weekend.
        assert_eq!(
            c.latest_at_or_before(utc("2026-11-30T01:00:00Z"), tz),
            Some(utc("2026-11-27T02:30:00Z"))
        );
        assert_eq!(
            c.latest_at_or_before(utc("2026-11-30T02:30:00Z"), tz),
            Some(utc("2026-11-30T02:30:00Z"))
        );
    }

    #[test]
    fn brazilian_offsets() {
        let c = cron("30 2 * * *");
        // São Paulo is UTC-3, Manaus UTC-4 (no daylight saving since 2019).
        assert_eq!(
            c.next_after(utc("2026-11-30T00:00:00Z"), chrono_tz::America::Sao_Paulo),
            Some(utc("2026-11-30T05:30:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2026-11-30T00:00:00Z"), chrono_tz::America::Manaus),
            Some(utc("2026-11-30T06:30:00Z"))
        );
        assert_eq!(
            c.latest_at_or_before(utc("2026-11-30T06:29:00Z"), chrono_tz::America::Manaus),
            Some(utc("2026-11-29T06:30:00Z"))
        );
    }

    #[test]
    fn daylight_saving_gap_fires_after_the_change() {
        let tz = chrono_tz::America::New_York;
        let c = cron("30 2 * * *");
        // 2026-03-08 02:00 EST jumps to 03:00 EDT (07:00Z): 02:30 does not exist.
        assert_eq!(
            c.next_after(utc("2026-03-08T05:00:00Z"), tz),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2026-03-08T07:00:00Z"), tz),
            Some(utc("2026-03-09T06:30:00Z"))
        );
        assert_eq!(
            c.latest_at_or_before(utc("2026-03-08T12:00:00Z"), tz),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        // Several slots inside the gap fire once, together.
        let q = cron("*/20 2 * * *");
        let first = q.next_after(utc("2026-03-08T06:00:00Z"), tz).unwrap();
        assert_eq!(first, utc("2026-03-08T07:00:00Z"));
        assert_eq!(q.next_after(first, tz), Some(utc("2026-03-09T06:00:00Z")));
    }

    #[test]
    fn daylight_saving_repeat_fires_once() {
        let tz = chrono_tz::America::New_York;
        let c = cron("30 1 * * *");
        // 2026-11-01 01:00-02:00 happens twice (EDT then EST).
        let first = c.next_after(utc("2026-11-01T04:00:00Z"), tz).unwrap();
        assert_eq!(first, utc("2026-11-01T05:30:00Z"));
        assert_eq!(c.next_after(first, tz), Some(utc("2026-11-02T06:30:00Z")));
        assert_eq!(
            c.latest_at_or_before(utc("2026-11-01T06:45:00Z"), tz),
            Some(utc("2026-11-01T05:30:00Z"))
        );
    }

    #[test]
    fn day_fields_or_when_both_restricted() {
        // The 1st of the month or any Monday.
        let c = cron("0 0 1 * mon");
        let tz = chrono_tz::UTC;
        // 2026-12-01 is a Tuesday; next Monday is 2026-12-07.
        assert_eq!(
            c.next_after(utc("2026-11-30T12:00:00Z"), tz),
            Some(utc("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2026-12-01T00:00:00Z"), tz),
            Some(utc("2026-12-07T00:00:00Z"))
        );
        // '*/2' counts as unrestricted, as in Vixie cron: both must match.
        let d = cron("0 0 */2 * mon");
        assert_eq!(
            d.next_after(utc("2026-11-30T12:00:00Z"), tz),
            Some(utc("2026-12-07T00:00:00Z"))
        );
    }

    #[test]
    fn rare_and_impossible_dates() {
        let tz = chrono_tz::UTC;
        assert_eq!(
            cron("0 0 29 feb *").next_after(utc("2026-11-30T00:00:00Z"), tz),
            Some(utc("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            cron("0 0 30 feb *").next_after(utc("2026-11-30T00:00:00Z"), tz),
            None
        );
        assert_eq!(
            cron("0 0 30 feb *").latest_at_or_before(utc("2026-11-30T00:00:00Z"), tz),
            None
        );
    }
}
