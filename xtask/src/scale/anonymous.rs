//! `--hostile`'s anonymous hosts: nobody with a certificate, each attack
//! from a loopback address of its own (127.0.0.2 and up; the normal agents
//! and the probe connect from 127.0.0.1), so that per-source budgets meet
//! one host per attack:
//!
//! | source | attack |
//! |---|---|
//! | 127.0.0.2 | `--silent-sockets` TCP connections on the gRPC port that never send a byte |
//! | 127.0.0.3 | as many on the HTTPS port |
//! | 127.0.0.4 | `--idle-tls` TLS connections without a client certificate on the gRPC port, handshake completed, then nothing |
//! | 127.0.0.5 | `--slow-bodies` gRPC `grpc.health.v1.Health/Check` calls announcing a 1 MiB message, then one byte a second |
//! | 127.0.0.6 | `--slow-bodies` HTTP/2 `POST /login` announcing 1 MB (`content-length`), then one byte a second |
//! | 127.0.0.7 | `--login-flood` connections posting `/login` back to back: unknown names, every 8th the known operator's name with a wrong password |
//!
//! Every connection is reopened a second after the server closes it, as an
//! attacker would. What each got (closed by the server and after how long,
//! answers by status, still open at the end) goes to the [`Tally`], and the
//! main counts to RESULT lines ([`results`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use h2::client::SendRequest;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use transmissor_tests::raw_h2;

use super::tally::{Tally, bucket};

/// The anonymous attacks' sizes.
#[derive(Args, Clone)]
pub struct AttackArgs {
    /// With --hostile: silent TCP connections held on each listener (gRPC, HTTPS).
    #[arg(long, default_value_t = 3000)]
    silent_sockets: usize,
    /// With --hostile: TLS connections without a client certificate held
    /// idle on the gRPC port.
    #[arg(long, default_value_t = 500)]
    idle_tls: usize,
    /// With --hostile: requests with a body trickling a byte a second, on
    /// each listener.
    #[arg(long, default_value_t = 100)]
    slow_bodies: usize,
    /// With --hostile: connections posting /login back to back.
    #[arg(long, default_value_t = 48)]
    login_flood: usize,
}

impl AttackArgs {
    /// Sockets the attacks hold at most at once (for the descriptor limit).
    pub fn sockets(&self) -> usize {
        2 * self.silent_sockets + self.idle_tls + 2 * self.slow_bodies + self.login_flood
    }
}

/// Where the attacks go.
pub struct Target {
    pub grpc: SocketAddr,
    pub https: SocketAddr,
    /// The CA of the collector's server certificate.
    pub trust: PathBuf,
    /// A known operator's name (the flood uses it with wrong passwords).
    pub operator: String,
}

pub const SILENT_GRPC: &str = "anonymous: silent TCP, gRPC port";
pub const SILENT_HTTPS: &str = "anonymous: silent TCP, HTTPS port";
pub const IDLE_TLS: &str = "anonymous: idle TLS, no certificate";
pub const SLOW_GRPC: &str = "anonymous: slow gRPC body, Health";
pub const SLOW_HTTPS: &str = "anonymous: slow HTTP/2 body, /login";
pub const LOGIN: &str = "anonymous: login flood";

/// A second between the end of a connection and the next.
const PAUSE: Duration = Duration::from_secs(1);
/// What the slow gRPC body announces.
const SLOW_GRPC_LEN: u32 = 1 << 20;
/// What the slow `/login` body announces.
const SLOW_HTTPS_LEN: usize = 1_000_000;

fn source(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Starts every anonymous attack in `set`, until `stop`.
pub fn spawn(
    set: &mut JoinSet<()>,
    target: &Target,
    sizes: &AttackArgs,
    tally: &Tally,
    stop: &CancellationToken,
) -> Result<()> {
    let tls = transmissor_tests::client::tls(&target.trust, None)?;
    let ctx = Arc::new(Ctx {
        tls,
        tally: tally.clone(),
        stop: stop.clone(),
    });
    let (grpc, https) = (target.grpc, target.https);
    for _ in 0..sizes.silent_sockets {
        let c = ctx.clone();
        set.spawn(async move { c.hold_loop(SILENT_GRPC, || tcp_from(source(2), grpc)).await });
        let c = ctx.clone();
        set.spawn(async move {
            c.hold_loop(SILENT_HTTPS, || tcp_from(source(3), https))
                .await
        });
    }
    for _ in 0..sizes.idle_tls {
        let c = ctx.clone();
        let tls = ctx.tls.clone();
        set.spawn(async move {
            c.hold_loop(IDLE_TLS, || tls_from(source(4), grpc, tls.clone()))
                .await
        });
    }
    for _ in 0..sizes.slow_bodies {
        let c = ctx.clone();
        set.spawn(async move {
            c.slow_loop(SLOW_GRPC, source(5), grpc, slow_grpc_request)
                .await
        });
        let c = ctx.clone();
        set.spawn(async move {
            c.slow_loop(SLOW_HTTPS, source(6), https, slow_login_request)
                .await
        });
    }
    for w in 0..sizes.login_flood {
        let (c, name) = (ctx.clone(), target.operator.clone());
        set.spawn(async move { c.login_loop(source(7), https, w, name).await });
    }
    Ok(())
}

/// The RESULT lines of the anonymous attacks: connections the server
/// closed, left open at the end, slow bodies answered, logins answered and
/// how many of them with 429.
pub fn results(tally: &Tally) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (name, attack) in [
        ("silent_grpc", SILENT_GRPC),
        ("silent_https", SILENT_HTTPS),
        ("idle_tls", IDLE_TLS),
        ("slow_grpc", SLOW_GRPC),
        ("slow_https", SLOW_HTTPS),
    ] {
        out.push((
            format!("scale_attack_{name}_closed_by_server"),
            tally.count(attack, "closed by the server") + tally.count(attack, "reset"),
        ));
        if attack == SLOW_GRPC || attack == SLOW_HTTPS {
            let answered = tally.count(attack, "answered");
            out.push((format!("scale_attack_{name}_answered"), answered));
        }
        let open = tally.count(attack, "open at the end");
        out.push((format!("scale_attack_{name}_open_at_end"), open));
    }
    out.push((
        "scale_attack_login_answered".into(),
        tally.count(LOGIN, "answered"),
    ));
    out.push((
        "scale_attack_login_429".into(),
        tally.count(LOGIN, "answered 429"),
    ));
    out
}

/// What every attacking task shares.
struct Ctx {
    tls: Arc<rustls::ClientConfig>,
    tally: Tally,
    stop: CancellationToken,
}

impl Ctx {
    /// Waits [`PAUSE`]; false when stopped meanwhile.
    async fn pause(&self) -> bool {
        (self
            .stop
            .run_until_cancelled(tokio::time::sleep(PAUSE))
            .await)
            .is_some()
    }

    /// Opens a connection, holds it without sending anything until the
    /// server closes it, and again.
    async fn hold_loop<F, Fut, S>(&self, attack: &str, open: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<S>>,
        S: AsyncRead + Unpin,
    {
        loop {
            match self.stop.run_until_cancelled(open()).await {
                None => return,
                Some(Err(e)) => self.tally.note(attack, failed(&e)),
                Some(Ok(mut io)) => {
                    let t = Instant::now();
                    let mut buf = [0u8; 4096];
                    let closed = async { while let Ok(1..) = io.read(&mut buf).await {} };
                    if self.stop.run_until_cancelled(closed).await.is_none() {
                        self.tally.note(attack, "open at the end");
                        return;
                    }
                    let after = bucket(t.elapsed());
                    self.tally
                        .note(attack, format!("closed by the server after {after}"));
                }
            }
            if !self.pause().await {
                return;
            }
        }
    }

    /// One slow request after another over new connections.
    async fn slow_loop(
        &self,
        attack: &str,
        src: Ipv4Addr,
        dst: SocketAddr,
        request: fn() -> (http::Request<()>, Bytes),
    ) {
        loop {
            let t = Instant::now();
            match self
                .stop
                .run_until_cancelled(slow(src, dst, &self.tls, request))
                .await
            {
                None => {
                    self.tally.note(attack, "open at the end");
                    return;
                }
                Some(Err(e)) => self.tally.note(attack, failed(&e)),
                Some(Ok(outcome)) => {
                    let after = bucket(t.elapsed());
                    self.tally.note(attack, format!("{outcome} after {after}"));
                }
            }
            if !self.pause().await {
                return;
            }
        }
    }

    /// Worker `w` of the login flood.
    async fn login_loop(&self, src: Ipv4Addr, dst: SocketAddr, w: usize, known: String) {
        let mut k = 0u64;
        loop {
            let conn = self.stop.run_until_cancelled(h2_from(src, dst, &self.tls));
            let (send, _conn) = match conn.await {
                None => return,
                Some(Err(e)) => {
                    self.tally.note(LOGIN, failed(&e));
                    if !self.pause().await {
                        return;
                    }
                    continue;
                }
                Some(Ok(c)) => c,
            };
            loop {
                k += 1;
                let (who, name) = match k % 8 {
                    0 => ("known name", known.clone()),
                    _ => ("unknown name", format!("nobody{w}x{k}")),
                };
                let body = format!("name={name}&password=wrong{k}");
                match self.stop.run_until_cancelled(login(&send, body)).await {
                    None => return,
                    Some(Ok((status, retry_after))) => {
                        let retry = if retry_after { " with Retry-After" } else { "" };
                        let outcome = format!("answered {status}{retry} ({who})");
                        self.tally.note(LOGIN, outcome);
                    }
                    Some(Err(e)) => {
                        self.tally
                            .note(LOGIN, format!("connection lost: {}", cause(&e)));
                        break;
                    }
                }
            }
            if !self.pause().await {
                return;
            }
        }
    }
}

/// "failed: <root cause>", the variable parts (addresses) left out.
fn failed(e: &anyhow::Error) -> String {
    format!("failed: {}", cause(e))
}

fn cause(e: &anyhow::Error) -> String {
    match e.root_cause().downcast_ref::<std::io::Error>() {
        Some(io) => format!("{:?}", io.kind()),
        None => e.root_cause().to_string(),
    }
}

/// A TCP connection to `dst` from `src`.
async fn tcp_from(src: Ipv4Addr, dst: SocketAddr) -> Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(src.into(), 0))
        .with_context(|| format!("binding {src}"))?;
    Ok(s.connect(dst).await?)
}

/// A TLS 1.3 connection without a client certificate (ALPN h2).
async fn tls_from(
    src: Ipv4Addr,
    dst: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(src, dst).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    Ok(tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?)
}

/// Aborts the HTTP/2 connection's driving task when dropped.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An HTTP/2 connection over [`tls_from`].
async fn h2_from(
    src: Ipv4Addr,
    dst: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(SendRequest<Bytes>, Driver)> {
    let io = tls_from(src, dst, tls.clone()).await?;
    let (send, conn) = h2::client::handshake(io).await?;
    let driver = Driver(tokio::spawn(async move {
        let _ = conn.await;
    }));
    Ok((send, driver))
}

/// The headers of the slow gRPC call and the body's first bytes: the
/// message prefix announcing [`SLOW_GRPC_LEN`] bytes.
fn slow_grpc_request() -> (http::Request<()>, Bytes) {
    let req = raw_h2::grpc_request("/grpc.health.v1.Health/Check");
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&SLOW_GRPC_LEN.to_be_bytes());
    (req, Bytes::from(prefix))
}

/// The headers of the slow login, announcing [`SLOW_HTTPS_LEN`] bytes, and
/// the body's first bytes.
fn slow_login_request() -> (http::Request<()>, Bytes) {
    let req = http::Request::post("https://localhost/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", SLOW_HTTPS_LEN)
        .body(())
        .expect("a well-formed request");
    (req, Bytes::from_static(b"name="))
}

/// One slow request: its first bytes, then a byte a second until the server
/// answers or resets the stream or the connection.
async fn slow(
    src: Ipv4Addr,
    dst: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    request: fn() -> (http::Request<()>, Bytes),
) -> Result<String> {
    let (send, _conn) = h2_from(src, dst, tls).await?;
    let mut send = send.ready().await?;
    let (req, first) = request();
    let (resp, mut body) = send.send_request(req, false)?;
    body.send_data(first, false)?;
    tokio::pin!(resp);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = &mut resp => return Ok(match r {
                Ok(resp) => match raw_h2::grpc_status(&resp) {
                    Some(code) => format!("answered grpc-status {code}"),
                    None => format!("answered {}", resp.status().as_u16()),
                },
                Err(e) => format!("reset: {}", h2_reason(&e)),
            }),
            _ = tick.tick() => {
                if let Err(e) = body.send_data(Bytes::from_static(b"a"), false) {
                    return Ok(format!("reset: {}", h2_reason(&e)));
                }
            }
        }
    }
}

fn h2_reason(e: &h2::Error) -> String {
    match e.reason() {
        Some(r) => format!("{r:?}"),
        None if e.is_io() => "connection closed by the server".into(),
        None => "connection error".into(),
    }
}

/// One `POST /login`; its status and whether it carried `Retry-After`.
async fn login(send: &SendRequest<Bytes>, body: String) -> Result<(u16, bool)> {
    let mut send = send.clone().ready().await?;
    let req = http::Request::post("https://localhost/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", body.len())
        .body(())?;
    let (resp, mut stream) = send.send_request(req, false)?;
    stream.send_data(Bytes::from(body), true)?;
    let resp = resp.await?;
    let retry_after = resp.headers().contains_key("retry-after");
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok((status, retry_after))
}
