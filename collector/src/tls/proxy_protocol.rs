//! The PROXY protocol (HAProxy's v1 text and v2 binary headers) in front of
//! the TLS handshake, accepted only from trusted load balancers.
//!
//! With `[server.proxy_protocol] enabled = true`, every connection must come
//! from an address in `trusted_proxies` and start with a header; the header's
//! source address then becomes the connection's peer address (logs, audit
//! rows, enrollment's per-address limit). [`read_header`] reads exactly the
//! header's bytes (the TLS handshake that follows is left in the socket) and
//! is bounded in size; the caller bounds it in time. Parsing is `ppp`'s.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::cutoff::{Cutoff, poll_read_cut, poll_write_cut, poll_write_vectored_cut};

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header (the specification's bound, CRLF included).
const V1_MAX: usize = 107;
/// Largest v2 address block accepted (addresses plus a few TLVs).
const V2_MAX_BODY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error(
        "connection from {0}, which is not a trusted proxy (server.proxy_protocol.trusted_proxies)"
    )]
    Untrusted(SocketAddr),
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// An address or a CIDR range (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?
        };
        Ok(Self { net, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Reads one PROXY header from `tcp`, and nothing after it. `Ok(None)` for a
/// `LOCAL` / `UNKNOWN` header (the balancer's own health checks).
pub async fn read_header(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut buf = vec![0u8; V2_SIGNATURE.len()];
    tcp.read_exact(&mut buf).await?;
    if buf == V2_SIGNATURE {
        let mut head = [0u8; 4];
        tcp.read_exact(&mut head).await?;
        buf.extend_from_slice(&head);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len > V2_MAX_BODY {
            return Err(ProxyHeaderError::Malformed(format!(
                "v2 address block of {len} bytes"
            )));
        }
        let start = buf.len();
        buf.resize(start + len, 0);
        tcp.read_exact(&mut buf[start..]).await?;
    } else if buf.starts_with(b"PROXY ") {
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(ProxyHeaderError::Malformed("v1 line too long".into()));
            }
            buf.push(tcp.read_u8().await?);
        }
    } else {
        return Err(ProxyHeaderError::Missing);
    }
    source_of(&buf)
}

/// The source address a complete header names.
fn source_of(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    use ppp::HeaderResult;
    let malformed = |e: &dyn std::fmt::Display| ProxyHeaderError::Malformed(e.to_string());
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            ppp::v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (ppp::v2::Command::Local, _) => None,
            (_, ppp::v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (_, ppp::v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            _ => None,
        }),
        HeaderResult::V1(Err(e)) => Err(malformed(&e)),
        HeaderResult::V2(Err(e)) => Err(malformed(&e)),
    }
}

/// A TCP connection and the client address it speaks for (the TCP peer, or
/// the PROXY header's source). tonic sees the client address as the
/// connection's `remote_addr`, so [`crate::identity::Peer`] reports it.
#[derive(Debug)]
pub struct ClientTcp {
    pub tcp: TcpStream,
    pub client: SocketAddr,
    /// The connection's place under `server.max_connections`, given back
    /// when the connection is dropped.
    pub slot: tokio::sync::OwnedSemaphorePermit,
    /// Its places in the per-source budgets, given back likewise.
    pub places: super::budget::Places,
    /// When it is cut (idle connections without a certificate).
    pub cutoff: Cutoff,
}

impl Connected for ClientTcp {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.tcp.local_addr().ok(),
            remote_addr: Some(self.client),
        }
    }
}

impl AsyncRead for ClientTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        poll_read_cut(&mut this.cutoff, Pin::new(&mut this.tcp), cx, buf)
    }
}

impl AsyncWrite for ClientTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        poll_write_cut(&mut this.cutoff, Pin::new(&mut this.tcp), cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        poll_write_vectored_cut(&mut this.cutoff, Pin::new(&mut this.tcp), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_ranges() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
    }

    #[test]
    fn v1_and_v2_sources() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 7443\r\n";
        assert_eq!(
            source_of(v1).unwrap(),
            Some("203.0.113.7:4242".parse().unwrap())
        );
        assert_eq!(source_of(b"PROXY UNKNOWN\r\n").unwrap(), None);
        let v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "[2001:db8::7]:5555".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:7443".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        assert_eq!(
            source_of(&v2).unwrap(),
            Some("[2001:db8::7]:5555".parse().unwrap())
        );
        assert!(source_of(b"PROXY TCP4 nonsense\r\n").is_err());
    }
}
