//! `[upload]`: what the uploads may take of the municipality's link — a
//! bandwidth cap per time-of-day window, read in the municipality's time
//! zone (`[schedule] timezone`), parsed and validated once.
//!
//! ```toml
//! [upload]
//! limit = "unlimited"          # outside every window (default)
//! bandwidth = [
//!   { from = "07:00", to = "18:00", limit = "2 Mbit/s", days = "weekdays" },
//!   { from = "18:00", to = "07:00", limit = "20 Mbit/s" },   # crosses midnight
//! ]
//! ```
//!
//! - `from`/`to`: `HH:MM` local times; `to` may be `24:00`. A window with
//!   `to` before `from` crosses midnight and ends on the next day; `from ==
//!   to` is refused (for a whole day write `00:00`–`24:00`).
//! - `days`: `"all"` (default), `"weekdays"` (Monday to Friday),
//!   `"weekends"`, or a list such as `["mon", "wed"]`: the days on which a
//!   window *starts* (a Friday 22:00–06:00 window ends on Saturday morning).
//! - `limit`: `"<number> <unit>"` with units `bit/s`, `kbit/s`, `Mbit/s`,
//!   `Gbit/s` (decimal bits) or `B/s`, `kB/s`, `MB/s`, `GB/s`, `KiB/s`,
//!   `MiB/s`, `GiB/s` (bytes), at least 64 kbit/s; or `"unlimited"`.
//! - Windows may not overlap (on any day of the week, after midnight
//!   crossings): every minute has at most one limit.
//!
//! Local time comes from UTC through the zone, so a daylight-saving change
//! simply moves the windows with the clock on the wall (in a spring-forward
//! gap the skipped local minutes never occur; in a fall-back hour the
//! repeated minutes are in the same window both times).

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Deserialize;

/// A rate: the cap on bytes sent to the collector per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rate {
    #[default]
    Unlimited,
    /// Bytes per second (≥ [`Rate::MIN_BYTES_PER_S`]).
    BytesPerSec(u64),
}

impl Rate {
    /// 64 kbit/s: below this the gRPC keep-alives and timeouts would fire.
    pub const MIN_BYTES_PER_S: u64 = 8_000;
    /// 100 Gbit/s.
    pub const MAX_BYTES_PER_S: u64 = 12_500_000_000;

    /// Bytes per second, `None` when unlimited.
    pub fn bytes_per_s(self) -> Option<u64> {
        match self {
            Self::Unlimited => None,
            Self::BytesPerSec(b) => Some(b),
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t == "unlimited" {
            return Ok(Self::Unlimited);
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?} has no unit (e.g. \"2 Mbit/s\", \"500 KiB/s\")"))?;
        let (num, unit) = t.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} does not start with a number"))?;
        let factor: f64 = match unit.trim() {
            "bit/s" => 1.0 / 8.0,
            "kbit/s" => 1e3 / 8.0,
            "Mbit/s" => 1e6 / 8.0,
            "Gbit/s" => 1e9 / 8.0,
            "B/s" => 1.0,
            "kB/s" => 1e3,
            "MB/s" => 1e6,
            "GB/s" => 1e9,
            "KiB/s" => 1024.0,
            "MiB/s" => 1024.0 * 1024.0,
            "GiB/s" => 1024.0 * 1024.0 * 1024.0,
            other => {
                return Err(format!(
                    "{s:?}: unknown unit {other:?} (bit/s, kbit/s, Mbit/s, Gbit/s, B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s)"
                ));
            }
        };
        let bytes = (value * factor).round();
        if !bytes.is_finite() || bytes < Self::MIN_BYTES_PER_S as f64 {
            return Err(format!(
                "{s:?} is below the smallest cap, 64 kbit/s (\"unlimited\" lifts the cap)"
            ));
        }
        if bytes > Self::MAX_BYTES_PER_S as f64 {
            return Err(format!("{s:?} is above 100 Gbit/s"));
        }
        Ok(Self::BytesPerSec(bytes as u64))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unlimited => f.write_str("unlimited"),
            Self::BytesPerSec(b) => {
                let bits = *b as f64 * 8.0;
                if bits >= 1e9 {
                    write!(f, "{:.3} Gbit/s", bits / 1e9)
                } else if bits >= 1e6 {
                    write!(f, "{:.3} Mbit/s", bits / 1e6)
                } else {
                    write!(f, "{:.1} kbit/s", bits / 1e3)
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Minutes in a week; minute 0 is Monday 00:00 local time.
const WEEK: u32 = 7 * 24 * 60;
const DAY: u32 = 24 * 60;

/// `HH:MM` as minutes of the day, `00:00` to `24:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClockTime(u32);

impl ClockTime {
    fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a time of day HH:MM (00:00 to 24:00)");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m > 59 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(Self(h * 60 + m))
    }
}

/// Which days a window starts on (bit 0 = Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Days(u8);

impl Days {
    const ALL: Self = Self(0b111_1111);

    fn parse(v: &DaysSpec) -> Result<Self, String> {
        match v {
            DaysSpec::Named(s) => match s.as_str() {
                "all" => Ok(Self::ALL),
                "weekdays" => Ok(Self(0b001_1111)),
                "weekends" => Ok(Self(0b110_0000)),
                other => Err(format!(
                    "days = {other:?}: use \"all\", \"weekdays\", \"weekends\" or a list such as [\"mon\", \"tue\"]"
                )),
            },
            DaysSpec::List(list) => {
                let mut bits = 0u8;
                for d in list {
                    let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                        .iter()
                        .position(|n| n == d)
                        .ok_or_else(|| format!("{d:?} is not a day (mon, tue, ..., sun)"))?;
                    if bits & (1 << i) != 0 {
                        return Err(format!("day {d:?} is listed twice"));
                    }
                    bits |= 1 << i;
                }
                if bits == 0 {
                    return Err("days is an empty list".into());
                }
                Ok(Self(bits))
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DaysSpec {
    Named(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    from: String,
    to: String,
    limit: Rate,
    #[serde(default)]
    days: Option<DaysSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpload {
    #[serde(default)]
    limit: Rate,
    #[serde(default)]
    bandwidth: Vec<RawWindow>,
}

/// One validated window: a limit over `[start, start + len)` minutes of
/// the week, for each day it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// As written, for logs: `07:00-18:00 weekdays`.
    pub label: String,
    pub limit: Rate,
    /// Week-minute intervals `[start, end)`, `end` may pass the week's end.
    spans: Vec<(u32, u32)>,
}

impl Window {
    fn contains(&self, minute_of_week: u32) -> bool {
        self.spans.iter().any(|&(s, e)| {
            (s..e).contains(&minute_of_week) || (e > WEEK && minute_of_week < e - WEEK)
        })
    }
}

/// `[upload]` parsed: the windows and the limit outside them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawUpload")]
pub struct UploadConfig {
    /// Outside every window.
    pub default_limit: Rate,
    pub windows: Vec<Window>,
}

impl TryFrom<RawUpload> for UploadConfig {
    type Error = String;

    fn try_from(raw: RawUpload) -> Result<Self, String> {
        let mut windows: Vec<Window> = Vec::new();
        for (i, w) in raw.bandwidth.iter().enumerate() {
            let at = |e: String| format!("upload.bandwidth[{i}]: {e}");
            let from = ClockTime::parse(&w.from).map_err(at)?;
            let to = ClockTime::parse(&w.to).map_err(at)?;
            if from.0 == DAY {
                return Err(at(
                    "from = \"24:00\": a window starts at 00:00 to 23:59".into()
                ));
            }
            if from == to {
                return Err(at(format!(
                    "from and to are both {:?}: for a whole day write from = \"00:00\", to = \"24:00\"",
                    w.from
                )));
            }
            let days = match &w.days {
                None => Days::ALL,
                Some(d) => Days::parse(d).map_err(at)?,
            };
            let len = if to.0 > from.0 {
                to.0 - from.0
            } else {
                DAY - from.0 + to.0
            };
            let spans = (0..7u32)
                .filter(|d| days.0 & (1 << d) != 0)
                .map(|d| (d * DAY + from.0, d * DAY + from.0 + len))
                .collect();
            let days_label = match &w.days {
                None => String::new(),
                Some(DaysSpec::Named(s)) => format!(" {s}"),
                Some(DaysSpec::List(l)) => format!(" {}", l.join(",")),
            };
            let window = Window {
                label: format!("{}-{}{days_label}", w.from, w.to),
                limit: w.limit,
                spans,
            };
            for (j, other) in windows.iter().enumerate() {
                if overlaps(&window, other) {
                    return Err(at(format!(
                        "{} overlaps upload.bandwidth[{j}] ({}): each minute may have one limit only",
                        window.label, other.label
                    )));
                }
            }
            windows.push(window);
        }
        Ok(Self {
            default_limit: raw.limit,
            windows,
        })
    }
}

/// Whether two windows share a minute of the week.
fn overlaps(a: &Window, b: &Window) -> bool {
    // Unroll each span onto [0, 2·WEEK) and compare also shifted by a week.
    a.spans.iter().any(|&(s1, e1)| {
        b.spans.iter().any(|&(s2, e2)| {
            [0i64, WEEK as i64, -(WEEK as i64)].iter().any(|&shift| {
                let (s2, e2) = (s2 as i64 + shift, e2 as i64 + shift);
                (s1 as i64) < e2 && s2 < e1 as i64
            })
        })
    })
}

impl UploadConfig {
    /// The limit in force at `now` in zone `tz`, and the window that sets
    /// it (`None`: outside every window).
    pub fn limit_at(&self, now: DateTime<Utc>, tz: chrono_tz::Tz) -> (Rate, Option<&Window>) {
        let local = now.with_timezone(&tz);
        let minute =
            local.weekday().num_days_from_monday() * DAY + local.hour() * 60 + local.minute();
        match self.windows.iter().find(|w| w.contains(minute)) {
            Some(w) => (w.limit, Some(w)),
            None => (self.default_limit, None),
        }
    }

    /// Whether any cap can ever apply.
    pub fn ever_limited(&self) -> bool {
        self.default_limit != Rate::Unlimited
            || self.windows.iter().any(|w| w.limit != Rate::Unlimited)
    }
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
