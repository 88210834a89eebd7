//! The HTTP accept loop: optional TLS 1.3 (server certificate only), and
//! admission bounded like the gRPC listener's ([`crate::tls::accept`]):
//!
//! - at most `MAX_CONNECTIONS` open connections, and `http.
//!   max_connections_per_source` from one source ([`crate::tls::budget`]);
//!   one more is closed at once;
//! - the first byte within `http.first_byte_timeout`, then the TLS
//!   handshake and each request's headers within `HANDSHAKE_TIMEOUT`;
//! - a connection that moves no byte for `http.idle_timeout` is closed
//!   ([`crate::tls::cutoff`]; this also ends dead peers, so no HTTP/2 ping
//!   is sent — a ping would count as traffic), and one older than `http.
//!   max_connection_age` is asked to close gracefully;
//! - a request's whole body must arrive within `http.body_read_timeout`
//!   ([`body_deadline`]; per-route size limits are the router's).
//!
//! On stop: no new connections, open ones finish within the drain time.

mod body_deadline;

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

use crate::config::HttpConfig;
use crate::tls::ConnectionsRefused;
use crate::tls::accept::{Refusal, count_refusal, first_byte};
use crate::tls::budget::SourceBudget;
use crate::tls::cutoff::{Cutoff, Guarded};

/// Open HTTP connections at once (dashboards, API clients, scrapers).
pub const MAX_CONNECTIONS: usize = 1024;
/// A TLS handshake, and a request's headers, must arrive within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP side's admission limits (from `[http]`).
#[derive(Debug, Clone)]
pub struct Admission {
    pub max_connections_per_source: usize,
    pub per_source_exempt: Vec<crate::tls::proxy_protocol::Cidr>,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connection_age: Duration,
    pub body_read_timeout: Duration,
    /// Refusals are counted here.
    pub refused: ConnectionsRefused,
}

impl Admission {
    pub fn new(cfg: &HttpConfig, refused: ConnectionsRefused) -> Self {
        Self {
            max_connections_per_source: cfg.max_connections_per_source,
            per_source_exempt: cfg.per_source_exempt.clone(),
            first_byte_timeout: cfg.first_byte_timeout,
            idle_timeout: cfg.idle_timeout,
            max_connection_age: cfg.max_connection_age,
            body_read_timeout: cfg.body_read_timeout,
            refused,
        }
    }
}

/// Serves a connection; past `max_age` asks it to close once its requests
/// are done (the idle cut-off bounds how long that takes).
macro_rules! aged {
    ($conn:expr, $max_age:expr) => {{
        let mut conn = std::pin::pin!($conn);
        tokio::select! {
            r = conn.as_mut() => r,
            () = tokio::time::sleep($max_age) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    }};
}

/// Serves `router` on `listener` until `stop`, then drains for `drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    stop: CancellationToken,
    drain: Duration,
    admission: Admission,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let body_read = admission.body_read_timeout;
    let router = router.layer(axum::middleware::map_request(
        move |req: axum::extract::Request| async move { body_deadline::bounded(req, body_read) },
    ));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_source = SourceBudget::new(
        admission.max_connections_per_source,
        &admission.per_source_exempt,
    );
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
            count_refusal(&admission.refused, "http", Refusal::MaxConnections, peer);
            continue;
        };
        let Some(place) = per_source.try_take(peer.ip()) else {
            count_refusal(
                &admission.refused,
                "http",
                Refusal::PerSourceConnections,
                peer,
            );
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
        let admission = admission.clone();
        conns.spawn(async move {
            let _held = (slot, place);
            if let Err(why) = first_byte(&tcp, admission.first_byte_timeout).await {
                count_refusal(&admission.refused, "http", why, peer);
                return;
            }
            let io = Guarded {
                inner: tcp,
                cutoff: Cutoff::new(Some(admission.idle_timeout), None),
            };
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .header_read_timeout(HANDSHAKE_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(64)
                .max_pending_accept_reset_streams(Some(64))
                .max_header_list_size(16 * 1024);
            let served = match acceptor {
                Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(io)).await {
                    Ok(Ok(tls)) => {
                        aged!(
                            builder.serve_connection_with_upgrades(TokioIo::new(tls), service),
                            admission.max_connection_age
                        )
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
                    aged!(
                        builder.serve_connection_with_upgrades(TokioIo::new(io), service),
                        admission.max_connection_age
                    )
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
