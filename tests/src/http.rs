//! A minimal HTTP/1.1 client for the collector's HTTP side: one request per
//! connection, over TLS 1.3 (trusting the collector's CA) or plain.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status code and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` at `addr`; over TLS when `ca` is given.
pub async fn get(addr: SocketAddr, path: &str, ca: Option<&Path>) -> Result<Response> {
    let tcp = TcpStream::connect(addr).await?;
    match ca {
        None => exchange(tcp, path).await,
        Some(ca) => {
            let mut cfg = (*crate::client::tls(ca, None)?).clone();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
            let tls = connector
                .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
                .await
                .context("tls handshake with the http side")?;
            exchange(tls, path).await
        }
    }
}

async fn exchange(mut io: impl AsyncRead + AsyncWrite + Unpin, path: &str) -> Result<Response> {
    io.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    io.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no http response: {text:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
