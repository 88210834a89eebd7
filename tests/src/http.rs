//! A minimal HTTP/1.1 client for the collector's HTTP side: one request per
//! connection, over TLS 1.3 (trusting the collector's CA) or plain.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status code, headers (lowercase names) and body (as text,
/// and as the bytes received, de-chunked).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` at `addr`; over TLS when `ca` is given.
pub async fn get(addr: SocketAddr, path: &str, ca: Option<&Path>) -> Result<Response> {
    request(addr, "GET", path, &[], "", ca).await
}

/// One request with extra header lines (`("Cookie", "...")`) and a body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    ca: Option<&Path>,
) -> Result<Response> {
    request_from(None, addr, method, path, headers, body, ca).await
}

/// [`request`] from the source address `from` (e.g. `127.0.0.2`: every
/// `127/8` address is this machine's, and a server sees it as the peer).
pub async fn request_from(
    from: Option<std::net::IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    ca: Option<&Path>,
) -> Result<Response> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    let tcp = match from {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let socket = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
    };
    match ca {
        None => exchange(tcp, &head).await,
        Some(ca) => {
            let mut cfg = (*crate::client::tls(ca, None)?).clone();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
            let tls = connector
                .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
                .await
                .context("tls handshake with the http side")?;
            exchange(tls, &head).await
        }
    }
}

async fn exchange(mut io: impl AsyncRead + AsyncWrite + Unpin, request: &str) -> Result<Response> {
    io.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    io.read_to_end(&mut raw).await?;
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no http response: {:?}", String::from_utf8_lossy(&raw));
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let bytes = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    })
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let Some(n) = std::str::from_utf8(&s[..eol])
            .ok()
            .and_then(|size| usize::from_str_radix(size.trim(), 16).ok())
        else {
            break;
        };
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}
