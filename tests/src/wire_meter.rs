//! A TCP relay in front of one backend that counts what clients send
//! through it: the bytes (TLS and all, as on the wire) and the time from
//! the first accepted connection to the last byte received, so a test can
//! bound the rate a client really sent at.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Shared {
    bytes: AtomicU64,
    /// First connection accepted, last client byte read.
    span: Mutex<(Option<Instant>, Option<Instant>)>,
}

pub struct WireMeter {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl WireMeter {
    /// Listens on 127.0.0.1 (a free port) and forwards to `backend`.
    pub async fn start(backend: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let (s, st) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    () = st.cancelled() => break,
                    r = listener.accept() => match r {
                        Ok((c, _)) => c,
                        Err(_) => continue,
                    },
                };
                if let Ok(mut span) = s.span.lock() {
                    span.0.get_or_insert_with(Instant::now);
                }
                tokio::spawn(forward(client, backend, s.clone(), st.clone()));
            }
        });
        Ok(Self { addr, shared, stop })
    }

    /// Bytes clients sent so far.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// From the first accepted connection to the last byte received.
    pub fn span(&self) -> Option<Duration> {
        let span = self.shared.span.lock().ok()?;
        Some(span.1?.saturating_duration_since(span.0?))
    }
}

impl Drop for WireMeter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn forward(
    client: TcpStream,
    backend: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let Ok(server) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
            if let Ok(mut span) = shared.span.lock() {
                span.1 = Some(Instant::now());
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::select! {
        () = stop.cancelled() => {}
        _ = async { tokio::join!(up, down) } => {}
    }
}
