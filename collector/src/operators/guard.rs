//! What stands in front of a login's password check: the throttle per
//! source and per name ([`super::throttle`]), then the bounded hashing pool
//! ([`super::hasher`]); with the counts `/metrics` shows and the name as it
//! may be logged.
//!
//! Refusals are counted, not audited one by one: only the first refusal of
//! each throttled episode is logged (as a warning), so a flood cannot fill
//! the logs; failed logins that were really checked are audited, and each
//! of those cost one Argon2 on the bounded pool, which bounds their rate.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::hasher::{self, Busy, HashPool};
use super::throttle::{self, Buckets, Rate, SourceKey, Verdict};

/// `[http.login]`: login budgets and the hashing pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginLimits {
    /// Attempts one source address (IPv4, or IPv6 /64) may make at once...
    #[serde(default = "default_source_burst")]
    pub source_burst: u32,
    /// ... and then per minute.
    #[serde(default = "default_source_per_minute")]
    pub source_per_minute: u32,
    /// Attempts at one operator name, from anywhere, at once...
    #[serde(default = "default_name_burst")]
    pub name_burst: u32,
    /// ... and then per minute.
    #[serde(default = "default_name_per_minute")]
    pub name_per_minute: u32,
    /// Most addresses, and most names, whose budgets are remembered (each).
    #[serde(default = "default_throttle_entries")]
    pub throttle_entries: usize,
    /// Threads that compute Argon2 (19 MiB each); default half the cores.
    #[serde(default)]
    pub hash_threads: Option<usize>,
    /// Checks that may wait for a thread; more are refused at once (503).
    #[serde(default = "default_hash_queue")]
    pub hash_queue: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        toml::from_str("").expect("login defaults")
    }
}

fn default_source_burst() -> u32 {
    10
}
fn default_source_per_minute() -> u32 {
    10
}
fn default_name_burst() -> u32 {
    5
}
fn default_name_per_minute() -> u32 {
    5
}
fn default_throttle_entries() -> usize {
    100_000
}
fn default_hash_queue() -> usize {
    8
}

/// Why a login was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over a budget: `429` with `Retry-After`.
    Throttled { retry_after: Duration, scope: Scope },
}

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Source,
    Name,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Name => "name",
        }
    }
}

/// The throttle and the pool, shared by every login of this replica.
pub struct LoginGuard {
    sources: Buckets<SourceKey>,
    names: Buckets<String>,
    pool: HashPool,
    refused_source: AtomicU64,
    refused_name: AtomicU64,
    failed: AtomicU64,
}

impl LoginGuard {
    pub fn new(limits: &LoginLimits) -> std::io::Result<Self> {
        let threads = limits.hash_threads.unwrap_or_else(hasher::default_threads);
        Ok(Self {
            sources: Buckets::new(
                Rate {
                    burst: limits.source_burst,
                    per_minute: limits.source_per_minute,
                },
                limits.throttle_entries,
            ),
            names: Buckets::new(
                Rate {
                    burst: limits.name_burst,
                    per_minute: limits.name_per_minute,
                },
                limits.throttle_entries,
            ),
            pool: HashPool::start(threads, limits.hash_queue)?,
            refused_source: AtomicU64::new(0),
            refused_name: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// Takes one attempt from the source's budget, then the name's; no hash
    /// is computed for a refused attempt.
    pub fn admit(&self, source: IpAddr, name: &str) -> Result<(), Refusal> {
        let now = Instant::now();
        let (verdict, scope) = match self.sources.take(&SourceKey::from(source), now) {
            Verdict::Allowed => (self.names.take(&throttle::name_key(name), now), Scope::Name),
            refused => (refused, Scope::Source),
        };
        let Verdict::Refused { retry_after, first } = verdict else {
            return Ok(());
        };
        match scope {
            Scope::Source => &self.refused_source,
            Scope::Name => &self.refused_name,
        }
        .fetch_add(1, Ordering::Relaxed);
        if first {
            tracing::warn!(
                %source,
                name = %printable_name(name),
                scope = scope.as_str(),
                retry_after_seconds = retry_after.as_secs(),
                "login throttled (further refusals are counted, not logged)"
            );
        }
        Err(Refusal::Throttled { retry_after, scope })
    }

    /// Checks `password` against `phc` (`None`: unknown name, the decoy) on
    /// the pool.
    pub async fn verify(&self, password: &str, phc: Option<String>) -> Result<bool, Busy> {
        self.pool.verify(password, phc).await
    }

    /// A right password: the attempt does not count against the name.
    pub fn succeeded(&self, name: &str) {
        self.names.give_back(&throttle::name_key(name));
    }

    /// A wrong name or password, checked.
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text for the login counters and the pool's gauges.
    pub fn render_metrics(&self) -> String {
        let s = self.pool.stats();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        family(
            "transmissor_login_hash_threads",
            "gauge",
            "Threads that check login passwords (Argon2).",
            &[("", self.pool.threads() as u64)],
        );
        family(
            "transmissor_login_hashes_in_flight",
            "gauge",
            "Login password checks computing now.",
            &[("", s.in_flight.load(Ordering::SeqCst) as u64)],
        );
        family(
            "transmissor_login_hashes_in_flight_max",
            "gauge",
            "The most login password checks ever computing at once.",
            &[("", s.in_flight_max.load(Ordering::SeqCst) as u64)],
        );
        family(
            "transmissor_login_refused_total",
            "counter",
            "Logins refused before any password check, by reason.",
            &[
                (
                    "{reason=\"source\"}",
                    self.refused_source.load(Ordering::Relaxed),
                ),
                (
                    "{reason=\"name\"}",
                    self.refused_name.load(Ordering::Relaxed),
                ),
                ("{reason=\"busy\"}", s.busy.load(Ordering::Relaxed)),
            ],
        );
        family(
            "transmissor_login_failures_total",
            "counter",
            "Logins checked and refused (wrong name or password).",
            &[("", self.failed.load(Ordering::Relaxed))],
        );
        out
    }
}

/// A name as it may be logged or audited: at most 64 characters, control
/// and bidirectional-override characters (CR and LF too) escaped.
pub fn printable_name(name: &str) -> String {
    let capped: String = name.chars().take(64).collect();
    transmissor_proto::terminal::printable(&capped).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_printable_and_capped() {
        let n = printable_name("ana\r\nforged line\u{202e}");
        assert!(!n.contains('\r') && !n.contains('\n') && !n.contains('\u{202e}'));
        assert!(n.starts_with("ana\\u{d}\\u{a}forged"), "{n}");
        assert_eq!(printable_name(&"x".repeat(1000)).len(), 64);
    }

    #[test]
    fn a_source_over_budget_spares_the_name_and_other_sources() {
        let limits = LoginLimits {
            source_burst: 2,
            name_burst: 3,
            hash_threads: Some(1),
            ..Default::default()
        };
        let g = LoginGuard::new(&limits).unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(g.admit(a, "ana"), Ok(()));
        assert_eq!(g.admit(a, "ana"), Ok(()));
        assert!(matches!(
            g.admit(a, "ana"),
            Err(Refusal::Throttled {
                scope: Scope::Source,
                ..
            })
        ));
        assert_eq!(g.admit(b, "ana"), Ok(()), "the name had one left");
        assert!(matches!(
            g.admit(b, "ANA "),
            Err(Refusal::Throttled {
                scope: Scope::Name,
                ..
            })
        ));
        // The refusal still cost `b` an attempt (cycling names is no way round).
        assert!(matches!(
            g.admit(b, "bia"),
            Err(Refusal::Throttled {
                scope: Scope::Source,
                ..
            })
        ));
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        assert_eq!(g.admit(c, "bia"), Ok(()));
        assert!(
            g.render_metrics()
                .contains("transmissor_login_refused_total{reason=\"name\"} 1")
        );
    }
}
