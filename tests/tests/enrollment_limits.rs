//! Issue #9, enrollment cannot be turned against everyone: junk from one
//! address (one load balancer) and junk tokens naming a municipality block
//! nobody; failures count against a real token id, atomically; the PROXY
//! protocol gives the client's address; TLS handshakes in progress are
//! capped.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;
use transmissor_proto::token::Token;
use transmissor_tests::identities::{enroll, enroll_at, enroll_on, plain_csr};
use transmissor_tests::stack::{Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");
const DAY: Duration = Duration::from_secs(86_400);

/// A stack whose collector config gets `server_lines` in `[server]` and
/// `extra` at the end, started in-process.
async fn stack(server_lines: &str, extra: &str) -> anyhow::Result<Stack> {
    let mut s = Stack::with_options(
        &[A],
        StackOptions {
            enrollment: true,
            collector_extra_toml: extra.into(),
            ..Default::default()
        },
    )
    .await?;
    let text = std::fs::read_to_string(&s.collector_config)?;
    let marker = "drain_timeout = \"10s\"\n";
    assert!(text.contains(marker));
    std::fs::write(
        &s.collector_config,
        text.replace(marker, &format!("{marker}{server_lines}\n")),
    )?;
    s.start_collector_in_process().await?;
    Ok(s)
}

fn wrong_secret(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[3] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    parts.join(".")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_from_one_address_and_naming_a_municipality_blocks_nobody() -> anyhow::Result<()> {
    let mut s = stack("", "").await?;
    let pin = transmissor_collector::ca::load(s.ca_dir.as_ref().expect("ca"))?.pin;
    let (_, csr) = plain_csr()?;
    // All from 127.0.0.1, as behind a load balancer: garbage, and
    // well-formed tokens for A whose ids do not exist.
    for _ in 0..25 {
        let e = enroll(&s, "txe1.junk", &csr).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let forged = Token::generate(A.0.parse()?, pin).to_string();
        let e = enroll(&s, &forged, &csr).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("unknown enrollment token"), "{e:?}");
    }
    let r = enroll(&s, &s.issue_token(A.0, DAY).await?, &csr).await?;
    assert_eq!(r.ibge, A.0);
    let c = s.analytic_client().await?;
    let token_rows: i64 = c
        .query_one(
            "SELECT count(*) FROM transmissor.enrollment_failures WHERE key LIKE 'token:%'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(token_rows, 0, "tokens that do not exist are not counted");
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_count_against_the_token_atomically_and_are_pruned() -> anyhow::Result<()> {
    let mut s = stack("", "\n[enrollment]\nmax_failures_per_token = 5\n").await?;
    let token = s.issue_token(A.0, DAY).await?;
    let bad = wrong_secret(&token);
    let (_, csr) = plain_csr()?;
    // Twenty wrong secrets at once, on connections already open: exactly
    // five are tried.
    let mut channels = Vec::new();
    for _ in 0..20 {
        let ch = transmissor_tests::client::channel(&s.endpoint(), &s.server_trust, None)?;
        tonic_health::pb::health_client::HealthClient::new(ch.clone())
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await?;
        channels.push(ch);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(channels.len()));
    let mut set = tokio::task::JoinSet::new();
    for ch in channels {
        let (start, bad, csr) = (start.clone(), bad.clone(), csr.clone());
        set.spawn(async move {
            start.wait().await;
            enroll_on(ch, &bad, &csr).await
        });
    }
    let mut codes = Vec::new();
    while let Some(r) = set.join_next().await {
        codes.push(r?.unwrap_err().code());
    }
    let tried = codes
        .iter()
        .filter(|c| **c == Code::PermissionDenied)
        .count();
    let limited = codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    assert_eq!((tried, limited), (5, 15), "{codes:?}");
    // The token itself is now locked for the window...
    let e = enroll(&s, &token, &csr).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("too many failed enrollment attempts"));
    // ...but not the municipality.
    enroll(&s, &s.issue_token(A.0, DAY).await?, &csr).await?;
    // Ended windows are pruned (here: every window), and the token works.
    let pool = s.collector_pool().await?;
    assert!(transmissor_collector::enroll::prune_attempts(&pool, Duration::ZERO).await? >= 1);
    enroll(&s, &token, &csr).await?;
    s.stop_collector().await?;
    Ok(())
}

/// A TCP forwarder on 127.0.0.1 that writes `header` to the collector before
/// relaying each connection (a load balancer speaking the PROXY protocol).
async fn proxy_with_header(target: SocketAddr, header: Vec<u8>) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let header = header.clone();
            tokio::spawn(async move {
                let mut out = TcpStream::connect(target).await?;
                out.write_all(&header).await?;
                tokio::io::copy_bidirectional(&mut inbound, &mut out).await?;
                anyhow::Ok(())
            });
        }
    });
    Ok(port)
}

/// A PROXY v2 header for a TCP over IPv6 client.
fn v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V6(src), SocketAddr::V6(dst)) = (src, dst) else {
        panic!("v6 addresses")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x21, 0, 36]);
    h.extend_from_slice(&src.ip().octets());
    h.extend_from_slice(&dst.ip().octets());
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_protocol_gives_the_client_address() -> anyhow::Result<()> {
    let mut s = stack(
        "",
        "\n[server.proxy_protocol]\nenabled = true\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n",
    )
    .await?;
    let target = s.collector_addr;
    let v1 = format!(
        "PROXY TCP4 203.0.113.7 127.0.0.1 4242 {}\r\n",
        target.port()
    );
    let p1 = proxy_with_header(target, v1.into_bytes()).await?;
    let v2 = v2_header("[2001:db8::7]:5555".parse()?, "[2001:db8::1]:7443".parse()?);
    let p2 = proxy_with_header(target, v2).await?;
    let (_, csr) = plain_csr()?;

    // A real token with a wrong secret, through the v1 balancer: the audit
    // row names the client, not the balancer.
    let token = s.issue_token(A.0, DAY).await?;
    let via = |port: u16| format!("https://localhost:{port}");
    let e = enroll_at(&via(p1), &s.server_trust, &wrong_secret(&token), &csr)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let c = s.analytic_client().await?;
    let from: String = c
        .query_one(
            "SELECT source_addr FROM transmissor.audit_log WHERE action = 'token.refused'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(from, "203.0.113.7:4242");
    // Through the v2 balancer, an enrollment records the client's address.
    let r = enroll_at(&via(p2), &s.server_trust, &token, &csr).await?;
    let from: String = c
        .query_one(
            "SELECT enrolled_from FROM transmissor.agents WHERE id = $1::text::uuid",
            &[&r.agent_id],
        )
        .await?
        .get(0);
    assert_eq!(from, "[2001:db8::7]:5555");
    // Without a header (straight to the collector) nothing gets through.
    let direct = enroll(&s, &s.issue_token(A.0, DAY).await?, &csr).await;
    assert!(direct.is_err(), "{direct:?}");
    let agents: i64 = c
        .query_one("SELECT count(*) FROM transmissor.agents", &[])
        .await?
        .get(0);
    assert_eq!(agents, 1);
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_in_progress_are_capped() -> anyhow::Result<()> {
    let mut s = stack(
        "max_concurrent_handshakes = 2\nhandshake_timeout = \"60s\"",
        "",
    )
    .await?;
    let token = s.issue_token(A.0, DAY).await?;
    let (_, csr) = plain_csr()?;
    // Two connections that began a handshake (one byte of a ClientHello)
    // and went quiet hold both handshake slots (a silent one holds none).
    let mut idle = [
        TcpStream::connect(s.collector_addr).await?,
        TcpStream::connect(s.collector_addr).await?,
    ];
    for c in &mut idle {
        c.write_all(&[0x16]).await?;
    }
    // A connection asks for a slot when its first byte is seen, in its own
    // task: give the server a moment to see both before the third arrives
    // (otherwise the third may take a slot first and rightly complete).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waited = tokio::time::timeout(Duration::from_secs(2), enroll(&s, &token, &csr)).await;
    assert!(
        waited.is_err(),
        "a third handshake completed while two were in progress: {waited:?}"
    );
    // They go away: the next connection gets a slot.
    drop(idle);
    let r = tokio::time::timeout(Duration::from_secs(20), enroll(&s, &token, &csr)).await??;
    assert_eq!(r.ibge, A.0);
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped() -> anyhow::Result<()> {
    let mut s = stack("max_connections = 2\nhandshake_timeout = \"60s\"", "").await?;
    let token = s.issue_token(A.0, DAY).await?;
    let (_, csr) = plain_csr()?;
    // Two silent connections hold both places.
    let idle = [
        TcpStream::connect(s.collector_addr).await?,
        TcpStream::connect(s.collector_addr).await?,
    ];
    // A third is closed as soon as it is accepted: the call fails at once
    // (it does not wait for a place).
    let third = tokio::time::timeout(Duration::from_secs(30), enroll(&s, &token, &csr))
        .await
        .map_err(|_| anyhow::anyhow!("a third connection was held instead of closed"))?;
    assert!(third.is_err(), "a third connection was served: {third:?}");
    // They go away: the next connection gets a place.
    drop(idle);
    let r = tokio::time::timeout(Duration::from_secs(20), enroll(&s, &token, &csr)).await??;
    assert_eq!(r.ibge, A.0);
    s.stop_collector().await?;
    Ok(())
}
