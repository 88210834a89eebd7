//! The gRPC listener's admission: from an accepted TCP connection to an
//! established TLS stream, with every place it takes bounded and most of
//! them per source ([`super::budget`]).
//!
//! In order, each refusal closing the connection at once (never queued):
//! 1. `server.max_connections` open in all, and `server.
//!    max_connections_per_source` from the TCP peer's source (a trusted
//!    PROXY balancer's own connections are bounded only by the total);
//! 2. the first bytes within `server.first_byte_timeout`: with the PROXY
//!    protocol the header (whose client address then takes the per-source
//!    place), and the ClientHello's first byte — peeked, not read. A silent
//!    connection never holds a handshake slot;
//! 3. `server.max_handshakes_per_source`, then one of `server.
//!    max_concurrent_handshakes` slots (waited for: only connections that
//!    are sending hold them), and the handshake, within `server.
//!    handshake_timeout`;
//! 4. a connection established without a client certificate (enrollment,
//!    health probes) takes a place among `server.
//!    max_connections_without_certificate` (and the per-source share), and
//!    is cut after `server.idle_timeout_without_certificate` without
//!    traffic; completed-but-idle anonymous connections cannot take the
//!    agents' connection budget.
//!
//! Refusals are counted in `transmissor_connections_refused_total{listener
//! = "grpc"}`; refused handshakes in `transmissor_tls_handshake_failures_total`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::budget::{Places, SourceBudget, SourcePermit};
use super::cutoff::Cutoff;
use super::proxy_protocol::{self, ClientTcp};
use crate::config::ServerConfig;
use crate::metrics::{ListenerReasonLabel, ReasonLabel};

/// Refused handshakes counted by reason class (`transmissor_tls_handshake_failures_total`).
pub type HandshakeFailures = Family<ReasonLabel, Counter>;

/// Connections closed at admission, by listener and reason
/// (`transmissor_connections_refused_total`).
pub type ConnectionsRefused = Family<ListenerReasonLabel, Counter>;

/// Why a connection was closed at admission (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    PerSourceConnections,
    FirstByteTimeout,
    ClosedBeforeFirstByte,
    PerSourceHandshakes,
    WithoutCertificate,
    UntrustedProxy,
    ProxyHeader,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::PerSourceConnections => "per_source_connections",
            Self::FirstByteTimeout => "first_byte_timeout",
            Self::ClosedBeforeFirstByte => "closed_before_first_byte",
            Self::PerSourceHandshakes => "per_source_handshakes",
            Self::WithoutCertificate => "without_certificate_budget",
            Self::UntrustedProxy => "untrusted_proxy",
            Self::ProxyHeader => "proxy_header",
        }
    }
}

/// Counts a refusal; logs the 1st, 2nd, 4th, 8th… of each reason (a flood
/// must not flood the log too).
pub fn count_refusal(
    refused: &ConnectionsRefused,
    listener: &'static str,
    why: Refusal,
    peer: SocketAddr,
) {
    let n = refused
        .get_or_create(&ListenerReasonLabel {
            listener,
            reason: why.label(),
        })
        .inc()
        + 1;
    if n.is_power_of_two() {
        tracing::warn!(%peer, listener, reason = why.label(), refused = n, "connection refused at admission");
    }
}

/// Waits (at most `within`) for the first bytes of `tcp` without reading them.
pub async fn first_byte(tcp: &TcpStream, within: Duration) -> Result<(), Refusal> {
    let mut one = [0u8; 1];
    match tokio::time::timeout(within, tcp.peek(&mut one)).await {
        Err(_) => Err(Refusal::FirstByteTimeout),
        Ok(Ok(n)) if n > 0 => Ok(()),
        Ok(_) => Err(Refusal::ClosedBeforeFirstByte),
    }
}

/// Accepts TCP connections and admits them to TLS concurrently (see the
/// module documentation), yielding established streams. Failures are
/// counted and logged, never fatal.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    server: &ServerConfig,
    shutdown: CancellationToken,
    failures: HandshakeFailures,
    refused: ConnectionsRefused,
) -> mpsc::Receiver<io::Result<TlsStream<ClientTcp>>> {
    let (tx, rx) = mpsc::channel(64);
    let exempt = &server.per_source_exempt;
    let handshake = Handshake {
        failures,
        refused: refused.clone(),
        acceptor: TlsAcceptor::from(config),
        timeout: server.handshake_timeout,
        first_byte_timeout: server.first_byte_timeout,
        slots: Arc::new(Semaphore::new(server.max_concurrent_handshakes)),
        per_source_connections: SourceBudget::new(server.max_connections_per_source, exempt),
        per_source_handshakes: SourceBudget::new(server.max_handshakes_per_source, exempt),
        without_certificate: Arc::new(Semaphore::new(server.max_connections_without_certificate)),
        without_certificate_per_source: SourceBudget::new(
            server.max_connections_without_certificate_per_source,
            exempt,
        ),
        idle_without_certificate: server.idle_timeout_without_certificate,
        proxies: server
            .proxy_protocol
            .enabled
            .then(|| Arc::new(server.proxy_protocol.trusted_proxies.clone())),
    };
    let open = Arc::new(Semaphore::new(server.max_connections));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = open.clone().try_acquire_owned() else {
                // Closed at once: every slot holds an open connection.
                count_refusal(&refused, "grpc", Refusal::MaxConnections, peer);
                continue;
            };
            // Behind a balancer the client is known after the header; the
            // balancer's own connections are bounded by the total only.
            let place = if handshake.proxies.is_some() {
                None
            } else {
                match handshake.per_source_connections.try_take(peer.ip()) {
                    Some(p) => Some(p),
                    None => {
                        count_refusal(&refused, "grpc", Refusal::PerSourceConnections, peer);
                        continue;
                    }
                }
            };
            let _ = tcp.set_nodelay(true);
            let (handshake, tx) = (handshake.clone(), tx.clone());
            tokio::spawn(async move {
                if let Some(stream) = handshake.run(tcp, peer, slot, place).await {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    rx
}

/// One connection's way from TCP to TLS.
#[derive(Clone)]
struct Handshake {
    failures: HandshakeFailures,
    refused: ConnectionsRefused,
    acceptor: TlsAcceptor,
    timeout: Duration,
    first_byte_timeout: Duration,
    slots: Arc<Semaphore>,
    per_source_connections: Arc<SourceBudget>,
    per_source_handshakes: Arc<SourceBudget>,
    without_certificate: Arc<Semaphore>,
    without_certificate_per_source: Arc<SourceBudget>,
    idle_without_certificate: Duration,
    /// Trusted proxies when the PROXY protocol is on.
    proxies: Option<Arc<Vec<proxy_protocol::Cidr>>>,
}

impl Handshake {
    async fn run(
        &self,
        mut tcp: TcpStream,
        peer: SocketAddr,
        slot: tokio::sync::OwnedSemaphorePermit,
        place: Option<SourcePermit>,
    ) -> Option<TlsStream<ClientTcp>> {
        let admitted = match &self.proxies {
            None => self.first_byte(&tcp).await.map(|()| (peer, place)),
            Some(trusted) => self.behind_proxy(&mut tcp, peer, trusted).await,
        };
        let (client, place) = match admitted {
            Ok(x) => x,
            Err(why) => {
                count_refusal(&self.refused, "grpc", why, peer);
                return None;
            }
        };
        let Some(_handshaking_here) = self.per_source_handshakes.try_take(client.ip()) else {
            count_refusal(&self.refused, "grpc", Refusal::PerSourceHandshakes, client);
            return None;
        };
        let tcp = ClientTcp {
            tcp,
            client,
            slot,
            places: Places {
                source: place,
                without_certificate: None,
            },
            cutoff: Cutoff::none(),
        };
        let work = async {
            // Only a connection that is sending gets here: a slot is held
            // by a handshake in progress, never by a silent socket.
            let _handshaking = self.slots.clone().acquire_owned().await.ok()?;
            match self.acceptor.accept(tcp).await {
                Ok(stream) => Some(stream),
                Err(e) => {
                    let class = super::log_handshake_failure(client, &e);
                    self.failures
                        .get_or_create(&ReasonLabel { reason: class })
                        .inc();
                    None
                }
            }
        };
        let mut stream = match tokio::time::timeout(self.timeout, work).await {
            Ok(stream) => stream?,
            Err(_) => {
                tracing::warn!(
                    peer = %client,
                    waiting_for_slot = self.slots.available_permits() == 0,
                    "tls handshake timed out"
                );
                self.failures
                    .get_or_create(&ReasonLabel { reason: "timeout" })
                    .inc();
                return None;
            }
        };
        let (io, session) = stream.get_mut();
        if session.peer_certificates().is_none_or(|c| c.is_empty()) {
            let total = self.without_certificate.clone().try_acquire_owned().ok();
            let here = self.without_certificate_per_source.try_take(client.ip());
            let (Some(total), Some(here)) = (total, here) else {
                count_refusal(&self.refused, "grpc", Refusal::WithoutCertificate, client);
                return None;
            };
            io.places.without_certificate = Some((total, here));
            io.cutoff.set_idle(self.idle_without_certificate);
        }
        Some(stream)
    }

    async fn first_byte(&self, tcp: &TcpStream) -> Result<(), Refusal> {
        first_byte(tcp, self.first_byte_timeout).await
    }

    /// The PROXY header (within the first-byte deadline), the client's
    /// per-source place, then the ClientHello's first byte.
    async fn behind_proxy(
        &self,
        tcp: &mut TcpStream,
        peer: SocketAddr,
        trusted: &[proxy_protocol::Cidr],
    ) -> Result<(SocketAddr, Option<SourcePermit>), Refusal> {
        if !trusted.iter().any(|c| c.contains(peer.ip())) {
            tracing::debug!(%peer, "connection from an untrusted proxy");
            return Err(Refusal::UntrustedProxy);
        }
        let client =
            match tokio::time::timeout(self.first_byte_timeout, proxy_protocol::read_header(tcp))
                .await
            {
                Err(_) => return Err(Refusal::FirstByteTimeout),
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "connection refused before tls");
                    return Err(Refusal::ProxyHeader);
                }
                Ok(Ok(client)) => client.unwrap_or(peer),
            };
        let place = self
            .per_source_connections
            .try_take(client.ip())
            .ok_or(Refusal::PerSourceConnections)?;
        self.first_byte(tcp).await?;
        Ok((client, Some(place)))
    }
}
