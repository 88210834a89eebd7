//! Issue #20, nobody outside the trust boundary slows the country down:
//! anonymous floods at the network front doors. Silent sockets, stalled
//! handshakes and completed-but-idle TLS connections without a certificate
//! come from other loopback addresses (127.0.0.2 and up); the harness's own
//! clients come from 127.0.0.1. Each flood is closed (per-source budgets,
//! the first-byte deadline, the budget of connections without a
//! certificate) while a real agent's handshake and call go through.
//!
//! Nothing here asserts a duration: "closed" means the server's FIN (or
//! reset) arrived, awaited under a generous bound, and "still open" is
//! checked without waiting, after the closings were seen.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tonic::Code;

use transmissor_tests::identities::call_code;
use transmissor_tests::raw_h2::grpc_request;
use transmissor_tests::stack::{HARNESS_FRONT_DOOR, Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");
/// How long a closing may take on a loaded machine before the test calls
/// it "never" (the deadlines under test are 1 s, the old behaviour 60 s).
const GENEROUS: Duration = Duration::from_secs(30);

/// A stack whose collector gets `server_lines` in `[server]` (replacing the
/// harness's own front-door lines) and `extra` at the end, started
/// in-process.
async fn stack(server_lines: &str, extra: &str) -> anyhow::Result<Stack> {
    let mut s = Stack::with_options(
        &[A],
        StackOptions {
            collector_extra_toml: extra.into(),
            ..Default::default()
        },
    )
    .await?;
    let text = std::fs::read_to_string(&s.collector_config)?;
    assert!(text.contains(HARNESS_FRONT_DOOR));
    std::fs::write(
        &s.collector_config,
        text.replace(HARNESS_FRONT_DOOR, server_lines),
    )?;
    s.start_collector_in_process().await?;
    Ok(s)
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse::<IpAddr>()?, 0))?;
    Ok(socket.connect(to).await?)
}

async fn connect_many(from: &str, to: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(connect_from(from, to).await?);
    }
    Ok(out)
}

/// Whether the server has closed `tcp` (end-of-file or reset), checked
/// without waiting.
fn closed_now(tcp: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tcp.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Waits for the server to close `tcp`.
async fn until_closed(tcp: &mut TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Waits (within [`GENEROUS`]) until `expected` of `conns` are closed by
/// the server; returns how many of the others are still open right after.
async fn closed_then_open(
    conns: &mut [TcpStream],
    expected: usize,
) -> anyhow::Result<(usize, usize)> {
    let mut closing: FuturesUnordered<_> = conns.iter_mut().map(until_closed).collect();
    let mut closed = 0;
    let seen = tokio::time::timeout(GENEROUS, async {
        while closed < expected && closing.next().await.is_some() {
            closed += 1;
        }
    })
    .await;
    drop(closing);
    anyhow::ensure!(
        seen.is_ok(),
        "only {closed} of {} connections were closed, {expected} expected",
        conns.len()
    );
    let open = conns.iter().filter(|c| !closed_now(c)).count();
    Ok((closed, open))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_neither_starves_nor_delays_another() -> anyhow::Result<()> {
    // Deadlines long enough that nothing here ends by a timer: what closes
    // a connection is a budget.
    let mut s = stack(
        "max_concurrent_handshakes = 8\nhandshake_timeout = \"60s\"\n\
         first_byte_timeout = \"60s\"\nmax_connections_per_source = 40\n\
         max_handshakes_per_source = 4",
        "",
    )
    .await?;
    let a = s.munis[0].clone();
    // 100 silent sockets from one address, far more than the 8 handshake
    // slots: 40 are admitted (silent, they hold no handshake slot), the
    // other 60 are closed at once.
    let mut silent = connect_many("127.0.0.2", s.collector_addr, 100).await?;
    // 20 from another address start a handshake and stall: 4 hold
    // handshake slots, 16 are closed at once.
    let mut stalled = connect_many("127.0.0.3", s.collector_addr, 20).await?;
    for c in &mut stalled {
        c.write_all(&[0x16]).await?;
    }
    // A real agent from a third address: handshake and an authenticated
    // call, while the floods are held.
    let (code, message) = tokio::time::timeout(GENEROUS, call_code(&s, (&a.cert, &a.key)))
        .await
        .map_err(|_| anyhow::anyhow!("the agent's call did not complete during the flood"))??;
    assert_eq!(code, Code::NotFound, "{message}");

    let (closed, open) = closed_then_open(&mut silent, 60).await?;
    assert_eq!((closed, open), (60, 40), "silent flood");
    let (closed, open) = closed_then_open(&mut stalled, 16).await?;
    assert_eq!((closed, open), (16, 4), "stalled handshakes");
    // Still held (the handshake slots left are 4 of 8): another call
    // goes through.
    let (code, _) = tokio::time::timeout(GENEROUS, call_code(&s, (&a.cert, &a.key))).await??;
    assert_eq!(code, Code::NotFound);
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_at_the_first_byte_deadline() -> anyhow::Result<()> {
    // Before the first-byte deadline a silent socket lived until the
    // handshake timeout (60 s here, beyond the bound).
    let mut s = stack(
        "handshake_timeout = \"60s\"\nfirst_byte_timeout = \"1s\"",
        "",
    )
    .await?;
    let mut silent = connect_many("127.0.0.2", s.collector_addr, 5).await?;
    let (closed, _) = closed_then_open(&mut silent, 5).await?;
    assert_eq!(closed, 5);
    s.stop_collector().await?;
    Ok(())
}

/// A TLS 1.3 + HTTP/2 connection from `from` without a client certificate;
/// `None` when the server closed it during or right after the handshake.
async fn without_certificate(
    s: &Stack,
    from: &str,
) -> anyhow::Result<Option<h2::client::SendRequest<Bytes>>> {
    let tls = transmissor_tests::client::tls(&s.pki.ca_cert, None)?;
    let tcp = connect_from(from, s.collector_addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let Ok(stream) = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
    else {
        return Ok(None);
    };
    let Ok((send, conn)) = h2::client::handshake(stream).await else {
        return Ok(None);
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Some(send))
}

/// Whether a `grpc.health.v1` check on `send` is answered `OK`.
async fn health_ok(send: &mut h2::client::SendRequest<Bytes>) -> bool {
    let call = async {
        let mut ready = send.clone().ready().await?;
        let (resp, mut body) =
            ready.send_request(grpc_request("/grpc.health.v1.Health/Check"), false)?;
        // An empty HealthCheckRequest: the 5-byte prefix only.
        body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)?;
        let resp = resp.await?;
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            chunk?;
        }
        let trailers = body.trailers().await?;
        anyhow::Ok(
            trailers
                .and_then(|t| t.get("grpc-status").cloned())
                .is_some_and(|v| v == "0"),
        )
    };
    matches!(tokio::time::timeout(GENEROUS, call).await, Ok(Ok(true)))
}

type Held = Vec<h2::client::SendRequest<Bytes>>;

/// Opens `n` connections without a certificate from `from`, adds them to
/// `held` (so they stay open); returns how many answer a health check.
async fn admitted_without_certificate(
    s: &Stack,
    from: &str,
    n: usize,
    held: &mut Held,
) -> anyhow::Result<usize> {
    let mut ok = 0;
    for _ in 0..n {
        if let Some(mut send) = without_certificate(s, from).await? {
            if health_ok(&mut send).await {
                ok += 1;
            }
            held.push(send);
        }
    }
    Ok(ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_certificate_have_their_own_small_budget() -> anyhow::Result<()> {
    let mut s = stack(
        "max_connections_without_certificate = 6\n\
         max_connections_without_certificate_per_source = 3\n\
         idle_timeout_without_certificate = \"10m\"",
        "",
    )
    .await?;
    let a = s.munis[0].clone();
    // Completed-but-idle TLS connections without a certificate: three per
    // source, six in all, the rest closed right after their handshake.
    let mut held = Held::new();
    for (from, admitted) in [("127.0.0.2", 3), ("127.0.0.3", 3), ("127.0.0.4", 0)] {
        assert_eq!(
            admitted_without_certificate(&s, from, 10, &mut held).await?,
            admitted,
            "from {from}"
        );
    }
    // They do not take an agent's place.
    let (code, message) = call_code(&s, (&a.cert, &a.key)).await?;
    assert_eq!(code, Code::NotFound, "{message}");
    drop(held);
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_without_a_certificate_is_cut() -> anyhow::Result<()> {
    let mut s = stack("idle_timeout_without_certificate = \"1s\"", "").await?;
    let tls = transmissor_tests::client::tls(&s.pki.ca_cert, None)?;
    let tcp = connect_from("127.0.0.2", s.collector_addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let (mut send, conn) = h2::client::handshake(stream).await?;
    let ended = tokio::spawn(conn);
    // One call, then nothing: the server ends the connection (before, it
    // lived until `max_connection_age`, an hour).
    assert!(health_ok(&mut send).await, "the health check was refused");
    let r = tokio::time::timeout(GENEROUS, ended).await;
    assert!(
        r.is_ok(),
        "an idle connection without a certificate was kept"
    );
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_side_caps_each_source_and_bounds_bodies() -> anyhow::Result<()> {
    let port = transmissor_tests::pg::free_port();
    let http: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut s = stack(
        HARNESS_FRONT_DOOR,
        &format!(
            "\n[http]\nlisten = \"{http}\"\nplain = true\nmax_connections_per_source = 4\n\
             first_byte_timeout = \"60s\"\nbody_read_timeout = \"1s\"\n"
        ),
    )
    .await?;
    let mut up = false;
    for _ in 0..400 {
        if TcpStream::connect(http).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::ensure!(up, "the http side did not listen");
    // Ten silent sockets from one address: four admitted, six closed at once.
    let mut silent = connect_many("127.0.0.2", http, 10).await?;
    // Another address is served meanwhile.
    let r = tokio::time::timeout(
        GENEROUS,
        transmissor_tests::http::get(http, "/healthz", None),
    )
    .await??;
    assert_eq!(r.status, 200, "{}", r.body);
    let (closed, open) = closed_then_open(&mut silent, 6).await?;
    assert_eq!((closed, open), (6, 4));
    drop(silent);

    // A body announced and trickled: the request ends at the body deadline
    // (answered or closed), instead of holding the connection.
    let mut slow = connect_from("127.0.0.3", http).await?;
    slow.write_all(
        b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nuser=",
    )
    .await?;
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(GENEROUS, slow.read_to_end(&mut answer)).await;
    assert!(ended.is_ok(), "a trickled body held its connection");
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_cut() -> anyhow::Result<()> {
    let port = transmissor_tests::pg::free_port();
    let http: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut s = stack(
        HARNESS_FRONT_DOOR,
        &format!("\n[http]\nlisten = \"{http}\"\nplain = true\nidle_timeout = \"1s\"\n"),
    )
    .await?;
    let mut tcp = None;
    for _ in 0..400 {
        if let Ok(t) = connect_from("127.0.0.2", http).await {
            tcp = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let tcp = tcp.ok_or_else(|| anyhow::anyhow!("the http side did not listen"))?;
    // HTTP/2 with prior knowledge: one request, then nothing. Before the
    // idle cut-off such a connection lived as long as the client wished.
    let (mut send, conn) = h2::client::handshake(tcp).await?;
    let ended = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(format!("http://{http}/healthz"))
        .body(())?;
    let (resp, _) = send.send_request(req, true)?;
    assert_eq!(resp.await?.status(), 200);
    let r = tokio::time::timeout(GENEROUS, ended).await;
    assert!(r.is_ok(), "an idle http/2 connection was kept");
    drop(send);
    s.stop_collector().await?;
    Ok(())
}
