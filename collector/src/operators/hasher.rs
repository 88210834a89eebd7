//! Password checks on a small pool of dedicated threads, off the async
//! workers that also serve gRPC: at most `threads` Argon2 computations at
//! once (so at most `threads` × 19 MiB), fed through a queue of `queue`
//! waiting checks; when the queue is full a check is refused at once
//! ([`Busy`]) instead of waiting. An unknown name is checked against the
//! decoy hash on the same pool, so it costs the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use tokio::sync::oneshot;

use super::password;

/// The queue is full: the caller should answer "try again" at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks waiting")]
pub struct Busy;

struct Job {
    password: String,
    /// `None`: the name is unknown; check against the decoy.
    phc: Option<String>,
    reply: oneshot::Sender<bool>,
}

/// What the pool has done, for `/metrics`.
#[derive(Default)]
pub struct PoolStats {
    /// Checks computing now.
    pub in_flight: AtomicUsize,
    /// The most ever computing at once.
    pub in_flight_max: AtomicUsize,
    /// Checks refused because the queue was full.
    pub busy: AtomicU64,
    /// Checks done.
    pub done: AtomicU64,
}

/// The pool; dropping it ends its threads once the queue drains.
pub struct HashPool {
    tx: SyncSender<Job>,
    threads: usize,
    stats: Arc<PoolStats>,
}

impl HashPool {
    /// Starts `threads` threads (at least one) with `queue` waiting slots.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let stats = Arc::new(PoolStats::default());
        // The decoy is computed once, before any login waits on it.
        let _ = password::decoy();
        for i in 0..threads {
            let rx = rx.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name(format!("login-hash-{i}"))
                .spawn(move || {
                    // This thread's Argon2 memory, kept: at most `threads`
                    // of them exist, whatever the traffic.
                    let mut memory = password::memory();
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            rx.recv()
                        };
                        let Ok(job) = job else { return };
                        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        stats.in_flight_max.fetch_max(now, Ordering::SeqCst);
                        let ok = match &job.phc {
                            Some(phc) => password::verify_in(&job.password, phc, &mut memory),
                            None => {
                                let _ = password::verify_in(
                                    &job.password,
                                    password::decoy(),
                                    &mut memory,
                                );
                                false
                            }
                        };
                        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
                        stats.done.fetch_add(1, Ordering::Relaxed);
                        let _ = job.reply.send(ok);
                    }
                })?;
        }
        Ok(Self { tx, threads, stats })
    }

    /// Whether `password` matches `phc` (`None`: an unknown name, never
    /// matches, same cost), or [`Busy`] at once when the queue is full.
    pub async fn verify(&self, password: &str, phc: Option<String>) -> Result<bool, Busy> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            password: password.to_string(),
            phc,
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                return Err(Busy);
            }
        }
        Ok(answer.await.unwrap_or(false))
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }
}

/// Half the cores, at least one: the default pool size.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_and_refuses_when_full() {
        let pool = HashPool::start(1, 1).unwrap();
        let phc = password::hash("correct horse battery").unwrap();
        assert_eq!(
            pool.verify("correct horse battery", Some(phc.clone()))
                .await,
            Ok(true)
        );
        assert_eq!(pool.verify("wrong", Some(phc.clone())).await, Ok(false));
        assert_eq!(pool.verify("x", None).await, Ok(false));
        // One computing, one waiting, the rest refused at once.
        let many: Vec<_> = (0..8).map(|_| pool.verify("x", None)).collect();
        let results = futures::future::join_all(many).await;
        assert!(results.contains(&Err(Busy)), "{results:?}");
        assert!(results.contains(&Ok(false)), "{results:?}");
        assert_eq!(pool.stats().in_flight_max.load(Ordering::SeqCst), 1);
    }
}
