//! The HTTP accept loop: optional TLS 1.3 (server certificate only), at most
//! `MAX_CONNECTIONS` open connections (one more is closed at once), a TLS
//! handshake and request headers each within `HANDSHAKE_TIMEOUT`, and on
//! stop: no new connections, open ones finish within the drain time.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Open HTTP connections at once (dashboards, API clients, scrapers).
pub const MAX_CONNECTIONS: usize = 1024;
/// A TLS handshake, and a request's headers, must arrive within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stop`, then drains for `drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    stop: CancellationToken,
    drain: Duration,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "http connection refused: too many open");
            continue;
        };
        // Handlers see the peer (`ConnectInfo`): login budgets are per source.
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: axum::http::Request<_>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            let _slot = slot;
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT);
            let served = match acceptor {
                Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(tls), service)
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "http tls handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "http tls handshake timed out");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
        });
    }
    // Open connections get the drain time to finish, then are closed.
    let _ = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    conns.shutdown().await;
}

/// TLS 1.3 with the collector's server certificate, no client certificate.
pub fn tls_config(
    cfg: &crate::config::TlsConfig,
) -> Result<Arc<rustls::ServerConfig>, crate::tls::TlsError> {
    crate::tls::http_server_config(cfg)
}
