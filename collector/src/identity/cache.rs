//! Positive identity results kept in memory, so a call of a known agent
//! needs no database round trip when the auth pool is saturated (the pool
//! is small, and a flood must not queue everyone's authentication behind
//! its own; while it has a connection free, the database decides).
//!
//! A revocation clears it as soon as it is known: every replica LISTENs on
//! [`CHANNEL`], which triggers (migration 0016) notify when an agent is
//! revoked, re-registered or its current certificate changes, when a
//! certificate is superseded, and when an issuing CA is retired; each
//! notification clears the cache. The cache is used only while that LISTEN
//! connection is up ([`IdentityCache::set_live`]): when it is lost, the
//! cache is cleared and every call is checked against the database until
//! the listener is back (fail safe). A generation number keeps a check that
//! read the database before a notification from storing its (stale) result
//! after it. `limits.identity_cache_ttl` bounds how long a result is kept
//! whatever happens (zero: no cache).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::{Caller, Presented};

/// The notification channel of identity changes.
pub const CHANNEL: &str = "transmissor_identity";

/// Most results kept; beyond, the cache starts over (bounded memory).
const MAX_ENTRIES: usize = 100_000;

/// The key of a presented chain: SHA-256 over every certificate's DER, so a
/// result is reused only for the very same leaf under the very same
/// issuers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    pub fn of(chain: &[rustls_pki_types::CertificateDer<'_>]) -> Self {
        let mut h = Sha256::new();
        for c in chain {
            h.update((c.as_ref().len() as u64).to_be_bytes());
            h.update(c.as_ref());
        }
        Self(h.finalize().into())
    }
}

struct Entry {
    caller: Caller,
    presented: Presented,
    at: Instant,
}

#[derive(Default)]
struct State {
    /// The LISTEN connection is up: results may be used and stored.
    live: bool,
    /// Bumped by every clear: a result read before it is not stored.
    generation: u64,
    entries: HashMap<ChainKey, Entry>,
}

pub struct IdentityCache {
    ttl: Duration,
    state: Mutex<State>,
}

impl IdentityCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored result for `key`, when the cache is live and it is fresh.
    pub fn get(&self, key: &ChainKey) -> Option<(Caller, Presented)> {
        let mut s = self.state();
        if !s.live {
            return None;
        }
        match s.entries.get(key) {
            Some(e) if e.at.elapsed() < self.ttl => Some((e.caller, e.presented.clone())),
            Some(_) => {
                s.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// The generation to hand back to [`Self::put`], taken before the
    /// database is read; `None` when results are not to be stored.
    pub fn generation(&self) -> Option<u64> {
        let s = self.state();
        (s.live && !self.ttl.is_zero()).then_some(s.generation)
    }

    /// Stores a result read under `generation`, unless the cache was
    /// cleared (or went down) since.
    pub fn put(&self, key: ChainKey, generation: u64, caller: Caller, presented: Presented) {
        let mut s = self.state();
        if !s.live || s.generation != generation {
            return;
        }
        if s.entries.len() >= MAX_ENTRIES {
            s.entries.clear();
        }
        s.entries.insert(
            key,
            Entry {
                caller,
                presented,
                at: Instant::now(),
            },
        );
    }

    /// Forgets every result (an identity changed somewhere).
    pub fn clear(&self) {
        let mut s = self.state();
        s.generation += 1;
        s.entries.clear();
    }

    /// Whether notifications are being received; either way the cache
    /// starts empty.
    pub fn set_live(&self, live: bool) {
        let mut s = self.state();
        s.live = live;
        s.generation += 1;
        s.entries.clear();
    }

    /// Results held now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Listens on [`CHANNEL`] with a connection of `pool` until `stop`:
    /// clears the cache on every notification (and calls `changed`), keeps
    /// it down while the connection is lost, reconnects with backoff.
    pub async fn listen(
        self: std::sync::Arc<Self>,
        pool: PgPool,
        stop: CancellationToken,
        changed: impl Fn() + Send + 'static,
    ) {
        let mut pause = Duration::from_millis(200);
        loop {
            match subscribe(&pool).await {
                Ok(mut listener) => {
                    self.set_live(true);
                    // Whatever changed while nobody listened: look again.
                    changed();
                    pause = Duration::from_millis(200);
                    tracing::debug!(channel = CHANNEL, "identity cache live");
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => {
                                self.set_live(false);
                                return;
                            }
                            r = listener.try_recv() => match r {
                                Ok(Some(_)) => {
                                    self.clear();
                                    changed();
                                }
                                Ok(None) => {
                                    self.set_live(false);
                                    tracing::warn!("identity notifications lost; every call is checked against the database until they are back");
                                    break;
                                }
                                Err(e) => {
                                    self.set_live(false);
                                    tracing::warn!(error = %crate::pg_error::describe(&e), "identity notifications lost; every call is checked against the database until they are back");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    self.set_live(false);
                    tracing::warn!(error = %crate::pg_error::describe(&e), "cannot listen for identity changes; every call is checked against the database");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen(CHANNEL).await?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Standing;

    fn result() -> (Caller, Presented) {
        (
            Caller {
                ibge: "3550308".parse().unwrap(),
                agent_id: uuid::Uuid::new_v4(),
            },
            Presented {
                serial: "01".into(),
                spki_sha256: [0; 32],
                standing: Standing::Current,
            },
        )
    }

    #[test]
    fn nothing_is_kept_unless_live_and_a_clear_wins_over_a_late_put() {
        let c = IdentityCache::new(Duration::from_secs(60));
        let k = ChainKey([1; 32]);
        let (caller, presented) = result();
        assert_eq!(c.generation(), None, "not live: nothing to store");
        c.set_live(true);
        let g = c.generation().unwrap();
        c.put(k, g, caller, presented.clone());
        assert_eq!(c.get(&k).map(|r| r.0), Some(caller));
        // A check that read the database before a notification.
        let g = c.generation().unwrap();
        c.clear();
        c.put(k, g, caller, presented.clone());
        assert!(c.get(&k).is_none(), "a stale result was stored");
        let g = c.generation().unwrap();
        c.put(k, g, caller, presented);
        c.set_live(false);
        assert!(c.get(&k).is_none() && c.is_empty(), "kept while not live");
    }
}
