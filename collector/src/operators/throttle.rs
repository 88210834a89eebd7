//! Login throttling before any hash: token buckets per source address
//! (IPv4 /32, IPv6 /64) and per operator name, in a bounded map.
//!
//! A bucket holds `burst` attempts and refills at `per_minute`. A full
//! bucket carries no state (a new one is the same), so it is dropped when
//! the map needs room; when the map is still at its cap, the half least
//! recently used is evicted. An attacker can then reset a bucket only by
//! filling the map, which costs as many attempts as the cap (each also
//! charged to its source). Buckets are per collector replica.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a source address is counted as: an IPv4 address, or an IPv6 /64
/// (one subscriber's whole prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl From<IpAddr> for SourceKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    Self::V6Prefix(prefix)
                }
            },
        }
    }
}

/// A name as throttled: trimmed, lowercase, at most 64 characters (names
/// that differ only beyond that, or in case, share a bucket).
pub fn name_key(name: &str) -> String {
    name.trim()
        .chars()
        .take(64)
        .flat_map(char::to_lowercase)
        .collect()
}

/// One budget: `burst` attempts, refilled at `per_minute`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub per_minute: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Refused since the bucket last admitted an attempt.
    refused: u64,
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over budget: retry after this long. `first` is the first refusal
    /// since the bucket last admitted one (logged; the rest are counted).
    Refused {
        retry_after: Duration,
        first: bool,
    },
}

/// Token buckets keyed by `K`, at most `cap` of them.
pub struct Buckets<K> {
    rate: Rate,
    cap: usize,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    /// At least one attempt at once and one a minute (a zero would lock
    /// every login out for good).
    pub fn new(rate: Rate, cap: usize) -> Self {
        let rate = Rate {
            burst: rate.burst.max(1),
            per_minute: rate.per_minute.max(1),
        };
        Self {
            rate,
            cap: cap.max(2),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.rate.per_minute) / 60.0
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second()).min(f64::from(self.rate.burst));
        b.at = now;
    }

    /// Takes one attempt from `key`'s bucket, if it has one.
    pub fn take(&self, key: &K, now: Instant) -> Verdict {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(key) && map.len() >= self.cap {
            self.make_room(&mut map, now);
        }
        let b = map.entry(key.clone()).or_insert(Bucket {
            tokens: f64::from(self.rate.burst),
            at: now,
            refused: 0,
        });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.refused = 0;
            Verdict::Allowed
        } else {
            b.refused += 1;
            let wait = (1.0 - b.tokens) / self.per_second();
            Verdict::Refused {
                retry_after: Duration::from_secs_f64(wait.ceil().max(1.0)),
                first: b.refused == 1,
            }
        }
    }

    /// Gives back an attempt taken by [`Self::take`] (a login that turned
    /// out right does not count against the name).
    pub fn give_back(&self, key: &K) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(f64::from(self.rate.burst));
        }
    }

    /// Drops full buckets (no state), then, if still at the cap, the half
    /// least recently used.
    fn make_room(&self, map: &mut HashMap<K, Bucket>, now: Instant) {
        let burst = f64::from(self.rate.burst);
        let per_second = self.per_second();
        map.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * per_second < burst
        });
        if map.len() < self.cap {
            return;
        }
        let mut ages: Vec<Instant> = map.values().map(|b| b.at).collect();
        let mid = ages.len() / 2;
        let (_, cutoff, _) = ages.select_nth_unstable(mid);
        let cutoff = *cutoff;
        map.retain(|_, b| b.at > cutoff);
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        burst: 3,
        per_minute: 6,
    };

    #[test]
    fn a_burst_then_refusals_then_refilled() {
        let b = Buckets::new(RATE, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.take(&"ana", t0), Verdict::Allowed);
        }
        assert_eq!(
            b.take(&"ana", t0),
            Verdict::Refused {
                retry_after: Duration::from_secs(10),
                first: true
            }
        );
        assert!(matches!(
            b.take(&"ana", t0),
            Verdict::Refused { first: false, .. }
        ));
        assert_eq!(b.take(&"bia", t0), Verdict::Allowed, "another key");
        assert_eq!(
            b.take(&"ana", t0 + Duration::from_secs(10)),
            Verdict::Allowed
        );
        b.give_back(&"ana");
        assert_eq!(
            b.take(&"ana", t0 + Duration::from_secs(10)),
            Verdict::Allowed
        );
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_the_recent() {
        let b = Buckets::new(RATE, 1000);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            b.take(&i, now);
            b.take(&i, now);
            assert!(b.len() <= 1000);
        }
        // The most recent key kept its state: one attempt left of three.
        let now = t0 + Duration::from_millis(10_000);
        assert_eq!(b.take(&9_999, now), Verdict::Allowed);
        assert!(matches!(b.take(&9_999, now), Verdict::Refused { .. }));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::from(a), SourceKey::from(b));
        assert_ne!(SourceKey::from(a), SourceKey::from(c));
        let m: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(SourceKey::from(m), SourceKey::V4([10, 0, 0, 1]));
        assert_eq!(name_key("  Ana "), "ana");
    }
}
