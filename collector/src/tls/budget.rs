//! Per-source budgets: how many connections (or handshakes, or connections
//! without a client certificate) one source address may hold at once.
//!
//! A *source* is an IPv4 address (/32) or an IPv6 /64 — one site, since a
//! single IPv6 host is usually given a whole /64 and can pick any address in
//! it. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
//! socket reports) counts as its IPv4 address. Behind a trusted PROXY
//! protocol balancer the source is the header's client address.
//!
//! Sources listed in `per_source_exempt` (a state network's NAT egress
//! known to carry many municipalities, a reverse proxy) are bounded by the
//! totals only. Behind a load balancer, turn on the PROXY protocol (then
//! the client's address is the source) or exempt the balancer.
//!
//! A budget is taken with [`SourceBudget::try_take`] and never waited for:
//! one more than the limit is refused at once and the caller closes the
//! connection. The returned [`SourcePermit`] gives its place back when
//! dropped; sources holding nothing are forgotten, so the table's size is
//! bounded by the connections open.
//!
//! The defaults (see `[server]` and `[http]` in the configuration) allow 64
//! connections and 16 handshakes in progress per source: several
//! municipalities (each agent holds one or two connections, a handshake
//! takes milliseconds) may share one egress address behind a state network's
//! NAT, while one hostile address can take at most 64 of the 16,384
//! connections and 16 of the 256 handshake slots.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::proxy_protocol::Cidr;

/// One source: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(u32),
    V6(u64),
}

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// At most `limit` places per source, held at once; sources in `exempt`
/// (a known NAT egress, a reverse proxy) are not counted.
#[derive(Debug)]
pub struct SourceBudget {
    limit: usize,
    exempt: Vec<Cidr>,
    held: Mutex<HashMap<Source, usize>>,
}

impl SourceBudget {
    pub fn new(limit: usize, exempt: &[Cidr]) -> Arc<Self> {
        Arc::new(Self {
            limit,
            exempt: exempt.to_vec(),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A place for `ip`'s source, or `None` when it holds `limit` already.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<SourcePermit> {
        if self.exempt.iter().any(|c| c.contains(ip)) {
            return Some(SourcePermit {
                budget: self.clone(),
                source: None,
            });
        }
        let source = Source::of(ip);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(source).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(SourcePermit {
            budget: self.clone(),
            source: Some(source),
        })
    }

    /// Places `ip`'s source holds now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(&Source::of(ip)).copied().unwrap_or(0)
    }

    fn give_back(&self, source: Source) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                held.remove(&source);
            }
        }
    }
}

/// One place in a [`SourceBudget`], given back on drop.
#[derive(Debug)]
pub struct SourcePermit {
    budget: Arc<SourceBudget>,
    /// `None` for an exempt source.
    source: Option<Source>,
}

impl Drop for SourcePermit {
    fn drop(&mut self) {
        if let Some(source) = self.source {
            self.budget.give_back(source);
        }
    }
}

/// A connection's places in the budgets it is counted in.
#[derive(Debug, Default)]
pub struct Places {
    /// Under the per-source connection limit.
    pub source: Option<SourcePermit>,
    /// Under the limits of connections without a client certificate (the
    /// total, and the source's).
    pub without_certificate: Option<(tokio::sync::OwnedSemaphorePermit, SourcePermit)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_v4_addresses_and_v6_slash_64s() {
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
        assert_ne!(Source::of(ip("10.0.0.1")), Source::of(ip("10.0.0.2")));
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn the_excess_is_refused_and_places_come_back() {
        let b = SourceBudget::new(2, &[]);
        let first = b.try_take(ip("10.0.0.1")).unwrap();
        let _second = b.try_take(ip("::ffff:10.0.0.1")).unwrap();
        assert!(b.try_take(ip("10.0.0.1")).is_none());
        // Another source is not affected.
        let _other = b.try_take(ip("10.0.0.2")).unwrap();
        drop(first);
        assert_eq!(b.held_by(ip("10.0.0.1")), 1);
        assert!(b.try_take(ip("10.0.0.1")).is_some());
        drop(_other);
        assert!(b.held.lock().unwrap().len() == 1);
    }

    #[test]
    fn exempt_sources_are_not_counted() {
        let b = SourceBudget::new(1, &["10.9.0.0/16".parse().unwrap()]);
        let held: Vec<_> = (0..10)
            .map(|_| b.try_take(ip("10.9.1.1")).unwrap())
            .collect();
        assert_eq!(b.held_by(ip("10.9.1.1")), 0);
        drop(held);
        let _one = b.try_take(ip("10.8.1.1")).unwrap();
        assert!(b.try_take(ip("10.8.1.1")).is_none());
    }
}
