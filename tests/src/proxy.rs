//! A TCP proxy that can cut the network: it forwards every connection to
//! one backend (bytes copied both ways, TLS passing through untouched) until
//! [`Proxy::cut`], which drops every live connection at once and closes new
//! ones as soon as they are accepted, until [`Proxy::restore`]. It stands
//! for a link that goes down and comes back (used by `cargo xtask fault`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the accept loop and the connections share with the handle.
struct Shared {
    /// Cancelled by a cut: every connection opened before it ends.
    generation: Mutex<CancellationToken>,
    /// False while the link is cut.
    up: AtomicBool,
    /// Connections closed because the link was cut (live or new).
    dropped: AtomicU64,
}

impl Shared {
    fn current(&self) -> CancellationToken {
        self.generation
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `backend`.
    pub async fn start(backend: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            generation: Mutex::new(CancellationToken::new()),
            up: AtomicBool::new(true),
            dropped: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, backend, shared.clone(), stop.clone()));
        Ok(Self { addr, shared, stop })
    }

    /// Cuts the link: drops every live connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        if let Ok(mut g) = self.shared.generation.lock() {
            g.cancel();
            *g = CancellationToken::new();
        }
    }

    /// Lets traffic through again (new connections only: cut ones stay cut).
    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// Connections closed by cuts so far (live ones and refused new ones).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.shared.current().cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    backend: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((c, _)) => c,
                Err(_) => continue,
            },
        };
        if !shared.up.load(Ordering::SeqCst) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, backend, shared.clone()));
    }
}

/// Copies bytes both ways until either side closes or the link is cut.
async fn forward(mut client: TcpStream, backend: SocketAddr, shared: Arc<Shared>) {
    let cut = shared.current();
    let Ok(mut server) = TcpStream::connect(backend).await else {
        return;
    };
    tokio::select! {
        () = cut.cancelled() => {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}
