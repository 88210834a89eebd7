//! When the long-running agent runs: at fixed local times of the day
//! (optionally Monday to Friday only) in a given time zone, or at a fixed
//! interval.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::config::ScheduleConfig;

pub const DEFAULT_TZ: &str = "America/Sao_Paulo";

#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Daily {
        times: Vec<NaiveTime>,
        tz: Tz,
        weekdays_only: bool,
    },
}

impl Schedule {
    /// `None` when the config sets no schedule.
    pub fn from_config(cfg: &ScheduleConfig) -> Option<Self> {
        if let Some(every) = cfg.every {
            return Some(Self::Every(every));
        }
        if cfg.daily_at.is_empty() {
            return None;
        }
        let tz: Tz = cfg
            .timezone
            .as_deref()
            .unwrap_or(DEFAULT_TZ)
            .parse()
            .unwrap_or(chrono_tz::America::Sao_Paulo);
        let mut times: Vec<NaiveTime> = cfg
            .daily_at
            .iter()
            .filter_map(|t| NaiveTime::parse_from_str(t, "%H:%M").ok())
            .collect();
        times.sort();
        Some(Self::Daily {
            times,
            tz,
            weekdays_only: cfg.weekdays_only,
        })
    }

    /// The first run time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Every(d) => {
                after + chrono::Duration::from_std(*d).unwrap_or(chrono::Duration::hours(1))
            }
            Self::Daily {
                times,
                tz,
                weekdays_only,
            } => {
                let local = after.with_timezone(tz).date_naive();
                for day in 0..9 {
                    let date = local + chrono::Days::new(day);
                    if *weekdays_only && matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
                        continue;
                    }
                    for t in times {
                        // A time skipped by a DST change is taken an hour later.
                        let candidate = tz
                            .from_local_datetime(&date.and_time(*t))
                            .earliest()
                            .or_else(|| {
                                tz.from_local_datetime(
                                    &(date.and_time(*t) + chrono::Duration::hours(1)),
                                )
                                .earliest()
                            });
                        if let Some(c) = candidate {
                            let c = c.with_timezone(&Utc);
                            if c > after {
                                return c;
                            }
                        }
                    }
                }
                after + chrono::Duration::days(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_in_sao_paulo_skips_weekend() {
        let cfg = ScheduleConfig {
            daily_at: vec!["02:30".into()],
            timezone: Some("America/Sao_Paulo".into()),
            weekdays_only: true,
            every: None,
        };
        let s = Schedule::from_config(&cfg).unwrap();
        // Friday 2026-11-20 10:00 UTC -> next is Monday 2026-11-23 02:30 -03:00.
        assert_eq!(
            s.next_after(utc("2026-11-20T10:00:00Z")),
            utc("2026-11-23T05:30:00Z")
        );
        // Tuesday 01:00 local -> same day 02:30 local.
        assert_eq!(
            s.next_after(utc("2026-11-24T04:00:00Z")),
            utc("2026-11-24T05:30:00Z")
        );
    }

    #[test]
    fn every_interval() {
        let cfg = ScheduleConfig {
            every: Some(Duration::from_secs(600)),
            ..Default::default()
        };
        let s = Schedule::from_config(&cfg).unwrap();
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:00Z")),
            utc("2026-01-01T00:10:00Z")
        );
        assert!(Schedule::from_config(&ScheduleConfig::default()).is_none());
    }
}
