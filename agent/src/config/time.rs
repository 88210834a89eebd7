//! Times of day and time zones in the agent config, parsed once into
//! typed values (an invalid one is a config error, never a fallback).

use serde::Deserialize;

/// A local time of day, `HH:MM`, parsed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime(pub chrono::NaiveTime);

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        chrono::NaiveTime::parse_from_str(&s, "%H:%M")
            .map(Self)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a time of day HH:MM")))
    }
}

/// An IANA time zone, parsed once (default America/Sao_Paulo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl Default for TimeZone {
    fn default() -> Self {
        Self(chrono_tz::America::Sao_Paulo)
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<chrono_tz::Tz>()
            .map(Self)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IANA time zone")))
    }
}
