//! A minimal TCP load balancer for tests: each new connection goes to the
//! next backend (round robin) that accepts it, and bytes are copied both ways.
//! It stands for whatever TCP balancer a deployment puts in front of several
//! collector replicas; TLS passes through untouched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Balancer {
    pub addr: SocketAddr,
    backends: Arc<std::sync::RwLock<Vec<SocketAddr>>>,
    stop: CancellationToken,
}

impl Balancer {
    /// Listens on 127.0.0.1 (a free port) and spreads connections over `backends`.
    pub async fn start(backends: Vec<SocketAddr>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let next = Arc::new(AtomicUsize::new(0));
        let backends = Arc::new(std::sync::RwLock::new(backends));
        let shared = backends.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    () = token.cancelled() => break,
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                };
                let (backends, next, token) = (backends.clone(), next.clone(), token.clone());
                tokio::spawn(async move {
                    let start = next.fetch_add(1, Ordering::Relaxed);
                    let list = backends.read().map(|b| b.clone()).unwrap_or_default();
                    for i in 0..list.len() {
                        let target = list[(start + i) % list.len()];
                        if let Ok(mut server) = TcpStream::connect(target).await {
                            let mut client = client;
                            tokio::select! {
                                () = token.cancelled() => {}
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            }
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            backends: shared,
            stop,
        })
    }

    /// Replaces the backends (new connections only).
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        if let Ok(mut b) = self.backends.write() {
            *b = backends;
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
