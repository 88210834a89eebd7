//! A raw HTTP/2 client over TLS 1.3 without a client certificate, to send
//! what a well-behaved gRPC client never would: streams opened without an
//! identity, a message body announced and never finished.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Result;
use bytes::Bytes;

/// Opens a connection to `addr` trusting `ca`, presenting no certificate;
/// the connection is driven by a task of its own.
pub async fn connect_without_certificate(
    addr: SocketAddr,
    ca: &Path,
) -> Result<h2::client::SendRequest<Bytes>> {
    let tls = crate::client::tls(ca, None)?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let (send, conn) = h2::client::handshake(stream).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// The headers of a gRPC call to `path`.
pub fn grpc_request(path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a well-formed request")
}

/// The start of a gRPC message announcing 30 MiB: its 5-byte prefix and
/// 1 KiB of body.
pub fn unfinished_message() -> Bytes {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(30u32 << 20).to_be_bytes());
    frame.extend(std::iter::repeat_n(7u8, 1024));
    Bytes::from(frame)
}

/// The grpc-status of a response (trailers-only responses carry it in the
/// headers).
pub fn grpc_status(resp: &http::Response<h2::RecvStream>) -> Option<String> {
    resp.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
