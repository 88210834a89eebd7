//! The upload bandwidth cap: `[upload]` windows evaluated in the
//! municipality's time zone ([`LinkCap`]), enforced on the bytes written
//! to the collector's socket ([`Throttled`], under TLS) by a token bucket
//! ([`bucket`]). The limit is looked up at each write (cached per minute),
//! so a window boundary takes effect on the open connection, without
//! reconnecting; each change is logged and the limit and the bytes sent
//! are metrics.
//!
//! | module        | responsibility                                        |
//! |---------------|-------------------------------------------------------|
//! | [`bucket`]    | token bucket in bytes, clock passed in                |
//! | [`throttled`] | `AsyncRead + AsyncWrite` wrapper pacing the writes    |

pub mod bucket;
pub mod throttled;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use crate::config::{Rate, UploadConfig};

pub use throttled::Throttled;

/// The cap in force, from the configured windows, plus the bytes sent
/// through every [`Throttled`] stream that shares it.
#[derive(Debug)]
pub struct LinkCap {
    upload: UploadConfig,
    tz: chrono_tz::Tz,
    state: Mutex<Option<CapState>>,
    sent: AtomicU64,
}

#[derive(Debug, Clone)]
struct CapState {
    /// The Unix minute of the last evaluation: windows have minute
    /// resolution, so the limit cannot change within one.
    minute: i64,
    rate: Rate,
    window: Option<String>,
}

impl LinkCap {
    pub fn new(upload: UploadConfig, tz: chrono_tz::Tz) -> Self {
        Self {
            upload,
            tz,
            state: Mutex::new(None),
            sent: AtomicU64::new(0),
        }
    }

    /// The limit in force now.
    pub fn current(&self) -> Rate {
        self.at(Utc::now())
    }

    /// The limit in force at `now`; logs the first evaluation and every
    /// change.
    pub fn at(&self, now: DateTime<Utc>) -> Rate {
        let minute = now.timestamp().div_euclid(60);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = state.as_ref()
            && s.minute == minute
        {
            return s.rate;
        }
        let (rate, window) = self.upload.limit_at(now, self.tz);
        let window = window.map(|w| w.label.clone());
        let shown = window.as_deref().unwrap_or("outside every window");
        match state.as_ref() {
            None => tracing::info!(limit = %rate, window = shown, timezone = %self.tz.name(),
                "upload bandwidth limit in force"),
            Some(old) if old.rate != rate || old.window != window => {
                tracing::info!(from = %old.rate, to = %rate, window = shown,
                    timezone = %self.tz.name(), "upload bandwidth limit changed")
            }
            Some(_) => {}
        }
        *state = Some(CapState {
            minute,
            rate,
            window,
        });
        rate
    }

    /// The limit last looked up, without logging (for metrics and the
    /// level choice): evaluates it when it never was.
    pub fn peek(&self) -> Rate {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match state {
            Some(s) if s.minute == Utc::now().timestamp().div_euclid(60) => s.rate,
            _ => self.upload.limit_at(Utc::now(), self.tz).0,
        }
    }

    pub(crate) fn add_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes written to the collector's sockets so far (TLS included).
    pub fn sent_bytes(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_limit_follows_the_windows_minute_by_minute() {
        let upload: UploadConfig =
            toml::from_str(r#"bandwidth = [{ from = "07:00", to = "18:00", limit = "2 Mbit/s" }]"#)
                .unwrap();
        let cap = LinkCap::new(upload, chrono_tz::America::Sao_Paulo);
        let at = |h, m| cap.at(Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap());
        assert_eq!(at(9, 59), Rate::Unlimited); // 06:59 local
        assert_eq!(at(10, 0), Rate::BytesPerSec(250_000)); // 07:00 local
        assert_eq!(at(20, 59), Rate::BytesPerSec(250_000));
        assert_eq!(at(21, 0), Rate::Unlimited);
    }
}
