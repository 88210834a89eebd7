//! Brazilian business days: weekends, national holidays (fixed and moved
//! by Easter) and a municipality's own extra holidays.
//!
//! National holidays (Lei 662/1949, Lei 6.802/1980, Lei 9.093/1995, Lei
//! 14.759/2023): 1 Jan, Good Friday, 21 Apr, 1 May, 7 Sep, 12 Oct, 2 Nov,
//! 15 Nov, 20 Nov (from 2024 on) and 25 Dec.
//!
//! Carnival Monday and Tuesday and Corpus Christi are only "pontos
//! facultativos" nationally, but nearly every municipal health service
//! closes on them, so they count as holidays unless
//! [`Calendar::include_optional`] is off. Ash Wednesday (closed until
//! noon) is a business day.

use std::collections::BTreeSet;

use chrono::{Datelike, Days, NaiveDate, Weekday};

/// The first year of the Gregorian computus used here.
const FIRST_GREGORIAN_YEAR: i32 = 1583;

/// The first year 20 November (Zumbi e Consciência Negra) is national.
const CONSCIENCIA_NEGRA_SINCE: i32 = 2024;

/// Fixed national holidays: (month, day, name).
const FIXED: [(u32, u32, &str); 9] = [
    (1, 1, "Confraternização Universal"),
    (4, 21, "Tiradentes"),
    (5, 1, "Dia do Trabalho"),
    (9, 7, "Independência do Brasil"),
    (10, 12, "Nossa Senhora Aparecida"),
    (11, 2, "Finados"),
    (11, 15, "Proclamação da República"),
    (11, 20, "Zumbi e Consciência Negra"),
    (12, 25, "Natal"),
];

/// Holidays moved by Easter: (days from Easter Sunday, name, optional).
const MOVABLE: [(i64, &str, bool); 4] = [
    (-48, "Carnaval (segunda-feira)", true),
    (-47, "Carnaval (terça-feira)", true),
    (-2, "Sexta-feira da Paixão", false),
    (60, "Corpus Christi", true),
];

/// One national holiday of a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holiday {
    pub date: NaiveDate,
    /// Its Portuguese name.
    pub name: &'static str,
    /// A "ponto facultativo" (Carnival, Corpus Christi).
    pub optional: bool,
}

/// Easter Sunday of `year` (anonymous Gregorian computus); `None` before
/// 1583 or beyond the dates `chrono` represents.
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    if year < FIRST_GREGORIAN_YEAR {
        return None;
    }
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// The national holidays of `year`, optional ones included, by date.
pub fn national_holidays(year: i32) -> Vec<Holiday> {
    let mut out: Vec<Holiday> = FIXED
        .iter()
        .filter(|(m, d, _)| (*m, *d) != (11, 20) || year >= CONSCIENCIA_NEGRA_SINCE)
        .filter_map(|&(m, d, name)| {
            Some(Holiday {
                date: NaiveDate::from_ymd_opt(year, m, d)?,
                name,
                optional: false,
            })
        })
        .collect();
    if let Some(easter) = easter_sunday(year) {
        out.extend(MOVABLE.iter().filter_map(|&(offset, name, optional)| {
            Some(Holiday {
                date: shift(easter, offset)?,
                name,
                optional,
            })
        }));
    }
    out.sort_by_key(|h| h.date);
    out
}

fn shift(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    let n = Days::new(days.unsigned_abs());
    if days < 0 {
        date.checked_sub_days(n)
    } else {
        date.checked_add_days(n)
    }
}

/// A municipality's calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// The municipality's own holidays (its anniversary, its patron saint).
    pub extra: BTreeSet<NaiveDate>,
    /// Count Carnival and Corpus Christi as holidays (default: yes).
    pub include_optional: bool,
}

impl Default for Calendar {
    fn default() -> Self {
        Self::new(BTreeSet::new())
    }
}

impl Calendar {
    /// The national calendar with optional days, plus `extra`.
    pub fn new(extra: BTreeSet<NaiveDate>) -> Self {
        Self {
            extra,
            include_optional: true,
        }
    }

    /// The holiday `date` is, national or municipal (`"feriado municipal"`).
    pub fn holiday(&self, date: NaiveDate) -> Option<&'static str> {
        if self.extra.contains(&date) {
            return Some("feriado municipal");
        }
        if let Some(&(_, _, name)) = FIXED.iter().find(|(m, d, _)| {
            (date.month(), date.day()) == (*m, *d)
                && ((*m, *d) != (11, 20) || date.year() >= CONSCIENCIA_NEGRA_SINCE)
        }) {
            return Some(name);
        }
        let easter = easter_sunday(date.year())?;
        let offset = (date - easter).num_days();
        MOVABLE
            .iter()
            .find(|(o, _, optional)| *o == offset && (self.include_optional || !optional))
            .map(|&(_, name, _)| name)
    }

    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holiday(date).is_some()
    }

    /// Monday to Friday and not a holiday.
    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !self.is_holiday(date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn easter_dates() {
        for (year, easter) in [
            (2024, "2024-03-31"),
            (2025, "2025-04-20"),
            (2026, "2026-04-05"),
            (2027, "2027-03-28"),
            (2000, "2000-04-23"),
            (2038, "2038-04-25"),
        ] {
            assert_eq!(easter_sunday(year), Some(d(easter)), "{year}");
        }
        assert_eq!(easter_sunday(1500), None);
    }

    #[test]
    fn movable_holidays_of_2026() {
        let cal = Calendar::default();
        for (date, name) in [
            ("2026-02-16", "Carnaval (segunda-feira)"),
            ("2026-02-17", "Carnaval (terça-feira)"),
            ("2026-04-03", "Sexta-feira da Paixão"),
            ("2026-06-04", "Corpus Christi"),
        ] {
            assert_eq!(cal.holiday(d(date)), Some(name), "{date}");
            assert!(!cal.is_business_day(d(date)), "{date}");
        }
        // Ash Wednesday is a business day.
        assert!(cal.is_business_day(d("2026-02-18")));
    }

    #[test]
    fn optional_days_can_be_excluded() {
        let cal = Calendar {
            include_optional: false,
            ..Calendar::default()
        };
        assert!(cal.is_business_day(d("2026-02-16")));
        assert!(cal.is_business_day(d("2026-06-04")));
        // Good Friday is a holiday either way.
        assert!(!cal.is_business_day(d("2026-04-03")));
    }

    #[test]
    fn fixed_holidays_and_weekends() {
        let cal = Calendar::default();
        for (date, business) in [
            ("2026-01-01", false), // Thursday, holiday
            ("2026-04-21", false), // Tuesday, Tiradentes
            ("2026-05-01", false),
            ("2026-09-07", false), // Monday, Independência
            ("2026-10-12", false),
            ("2026-11-02", false),
            ("2026-11-20", false), // Friday, national since 2024
            ("2023-11-20", true),  // Monday, not yet national
            ("2026-12-25", false),
            ("2026-03-13", true),  // an ordinary Friday
            ("2026-03-14", false), // Saturday
            ("2026-03-15", false), // Sunday
            ("2026-03-16", true),  // Monday
        ] {
            assert_eq!(cal.is_business_day(d(date)), business, "{date}");
        }
    }

    #[test]
    fn municipal_holidays() {
        let cal = Calendar::new([d("2026-03-19")].into());
        assert_eq!(cal.holiday(d("2026-03-19")), Some("feriado municipal"));
        assert!(!cal.is_business_day(d("2026-03-19")));
        assert!(cal.is_business_day(d("2026-03-20")));
    }

    #[test]
    fn listing_is_sorted_and_complete() {
        let all = national_holidays(2026);
        assert_eq!(all.len(), 13);
        assert!(all.windows(2).all(|w| w[0].date < w[1].date));
        assert_eq!(all.iter().filter(|h| h.optional).count(), 3);
        assert_eq!(national_holidays(2023).len(), 12);
    }
}
