//! Enrollment, heartbeat, renewal and the hot certificate swap against a
//! fake collector speaking real gRPC over real TLS 1.3 on 127.0.0.1:
//! enrollment without a client certificate (the token's pin verifies the
//! server), everything else over mutual TLS. The real collector's tests live
//! in the `tests` crate; this one pins down the agent's side on its own.

#[path = "../src/identity/testpki.rs"]
mod testpki;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use transmissor_agent::config::AgentConfig;
use transmissor_agent::heartbeat::Heartbeat;
use transmissor_agent::identity::clock::{self, ClockSync};
use transmissor_agent::identity::credentials::Credentials;
use transmissor_agent::identity::enroll::{EnrollError, EnrollOptions, enroll};
use transmissor_agent::identity::renew::Renewer;
use transmissor_agent::identity::{self, IdentityPaths};
use transmissor_agent::pipeline::spool::Spool;
use transmissor_agent::pipeline::transport;
use transmissor_agent::run::Agent;
use transmissor_agent::status::AgentStatus;
use transmissor_proto::identity::AgentUri;
use transmissor_proto::pb;
use transmissor_proto::token::Token;

use testpki::Ca;

const SKEW_MS: i64 = 5 * 60_000;
const DAY: Duration = Duration::from_secs(86_400);

/// What the fake collector saw: (rpc, leaf certificate presented, heartbeat).
type Calls = Arc<Mutex<Vec<(&'static str, Option<Vec<u8>>, Option<pb::HeartbeatRequest>)>>>;

struct Fake {
    root: Ca,
    issuing: Ca,
    token: String,
    token_used: Mutex<bool>,
    /// Issued certificates start this long ago (to make renewal due).
    backdate: Duration,
    calls: Calls,
    /// Trust bundle renewals answer with instead of the root (when set).
    renew_bundle: Mutex<Option<String>>,
    /// Public keys of the CSRs renewals carried.
    renew_keys: Mutex<Vec<Vec<u8>>>,
}

impl Fake {
    fn issue(&self, csr_pem: &str, uri: &AgentUri) -> Result<String, Status> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        let nb = time::OffsetDateTime::now_utc() - self.backdate - Duration::from_secs(300);
        let leaf = self.issuing.agent(&csr.public_key, uri, nb, 7 * DAY);
        Ok(format!("{leaf}{}", self.issuing.pem))
    }

    fn record<T>(
        &self,
        rpc: &'static str,
        req: &Request<T>,
        hb: Option<pb::HeartbeatRequest>,
    ) -> Option<AgentUri> {
        let leaf = req.peer_certs().and_then(|c| c.first().map(|c| c.to_vec()));
        let uri = leaf
            .as_ref()
            .and_then(|l| identity::agent_uri_of(&CertificateDer::from(l.clone())));
        self.calls.lock().unwrap().push((rpc, leaf, hb));
        uri
    }

    fn now() -> i64 {
        clock::now_unix_ms() + SKEW_MS
    }
}

/// The gRPC services over the shared fake.
#[derive(Clone)]
struct Svc(Arc<Fake>);

impl std::ops::Deref for Svc {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

#[tonic::async_trait]
impl pb::enrollment_server::Enrollment for Svc {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        self.record("enroll", &req, None);
        let r = req.into_inner();
        let mut used = self.token_used.lock().unwrap();
        if r.token != self.token {
            return Err(Status::permission_denied("unknown token"));
        }
        if *used {
            return Err(Status::permission_denied("this token was already used"));
        }
        *used = true;
        let token: Token = r.token.parse().unwrap();
        let uri = AgentUri::new(token.ibge, uuid::Uuid::new_v4());
        Ok(Response::new(pb::EnrollResponse {
            agent_id: uri.agent_id.to_string(),
            ibge: uri.ibge.to_string(),
            certificate_chain_pem: self.issue(&r.csr_pem, &uri)?,
            trust_bundle_pem: self.root.pem.clone(),
            collector_time_unix_ms: Fake::now(),
        }))
    }
}

#[tonic::async_trait]
impl pb::agent_lifecycle_server::AgentLifecycle for Svc {
    async fn renew(
        &self,
        req: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        let uri = self
            .record("renew", &req, None)
            .ok_or_else(|| Status::unauthenticated("no certificate"))?;
        if let Ok(csr) = rcgen::CertificateSigningRequestParams::from_pem(&req.get_ref().csr_pem) {
            use rcgen::PublicKeyData;
            let key = csr.public_key.subject_public_key_info();
            self.renew_keys.lock().unwrap().push(key);
        }
        let bundle = self.renew_bundle.lock().unwrap().clone();
        Ok(Response::new(pb::RenewResponse {
            certificate_chain_pem: self.issue(&req.get_ref().csr_pem, &uri)?,
            trust_bundle_pem: bundle.unwrap_or_else(|| self.root.pem.clone()),
            collector_time_unix_ms: Fake::now(),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let hb = req.get_ref().clone();
        self.record("heartbeat", &req, Some(hb))
            .ok_or_else(|| Status::unauthenticated("no certificate"))?;
        Ok(Response::new(pb::HeartbeatResponse {
            collector_time_unix_ms: Fake::now(),
            ..Default::default()
        }))
    }

    async fn fetch_plan(
        &self,
        _: Request<pb::FetchPlanRequest>,
    ) -> Result<Response<pb::FetchPlanResponse>, Status> {
        Err(Status::unimplemented("this fake serves no plans"))
    }

    async fn check(
        &self,
        _: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        Err(Status::unimplemented("this fake answers no doctor"))
    }
}

/// Starts the fake collector; returns its endpoint.
async fn start(backdate: Duration) -> (String, Arc<Fake>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = Ca::root("fake collector root");
    let issuing = root.issuing("fake collector issuing");
    let (leaf, key) = issuing.server(&["localhost", "127.0.0.1"]);
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(format!("{leaf}{}{}", issuing.pem, root.pem).as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.der.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            chain,
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let token = Token::generate("3550308".parse().unwrap(), root.pin()).to_string();
    let fake = Arc::new(Fake {
        root,
        issuing,
        token,
        token_used: Mutex::new(false),
        backdate,
        calls: Arc::default(),
        renew_bundle: Mutex::default(),
        renew_keys: Mutex::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let incoming = futures::stream::unfold((listener, acceptor), |(l, a)| async move {
        loop {
            let (tcp, _) = l.accept().await.ok()?;
            if let Ok(tls) = a.accept(tcp).await {
                return Some((Ok::<_, std::io::Error>(tls), (l, a)));
            }
        }
    });
    let router = tonic::transport::Server::builder()
        .add_service(pb::enrollment_server::EnrollmentServer::new(Svc(
            fake.clone()
        )))
        .add_service(pb::agent_lifecycle_server::AgentLifecycleServer::new(Svc(
            fake.clone(),
        )));
    tokio::spawn(router.serve_with_incoming(incoming));
    (format!("https://localhost:{}", addr.port()), fake)
}

fn leaf_of(c: &Credentials) -> Vec<u8> {
    c.current().cert[0].to_vec()
}

#[tokio::test]
async fn enroll_heartbeat_renew_and_swap() {
    let (endpoint, fake) = start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let paths = IdentityPaths::in_state_dir(dir.path());

    // A token pinning another CA: the collector is not trusted, nothing is stored.
    let other =
        Token::generate("3550308".parse().unwrap(), Ca::root("elsewhere").pin()).to_string();
    let e = enroll(&EnrollOptions::new(&endpoint, &other, paths.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, EnrollError::PinMismatch(_)), "{e}");
    assert!(
        e.to_string()
            .contains("is not the one this token was issued for"),
        "{e}"
    );
    assert!(paths.existing().is_empty());
    assert!(
        fake.calls.lock().unwrap().is_empty(),
        "nothing may reach an unverified server"
    );

    // The real token enrolls.
    let enrolled = enroll(&EnrollOptions::new(&endpoint, &fake.token, paths.clone()))
        .await
        .unwrap();
    let summary = enrolled.to_string();
    assert!(
        summary.contains(&enrolled.agent_id.to_string()) && summary.contains("3550308"),
        "{summary}"
    );
    assert!(
        summary.contains("WARNING") && summary.contains("behind the collector"),
        "{summary}"
    );
    assert!(!summary.contains(&fake.token));
    assert!((enrolled.clock_offset_ms - SKEW_MS).abs() < 5_000);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let info = identity::read_info(&paths).unwrap().unwrap();
    assert_eq!(
        (info.agent_id, info.ibge.as_str()),
        (enrolled.agent_id, "3550308")
    );
    assert_eq!(info.collector, endpoint);

    // No silent overwrite; a spent token is refused with the collector's reason.
    let e = enroll(&EnrollOptions::new(&endpoint, &fake.token, paths.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, EnrollError::AlreadyEnrolled(_)), "{e}");
    let mut again = EnrollOptions::new(&endpoint, &fake.token, paths.clone());
    again.force = true;
    let e = enroll(&again).await.unwrap_err();
    assert!(
        matches!(&e, EnrollError::TokenRefused(m) if m.contains("already used")),
        "{e}"
    );

    // Mutual TLS with the stored identity: heartbeat measures the clock.
    let creds = Arc::new(Credentials::load(&paths).unwrap());
    let tls = creds.client_config().unwrap();
    let timeouts = (Duration::from_secs(5), Duration::from_secs(10));
    let channel =
        transport::connect_lazy(tls.clone(), &endpoint, None, timeouts.0, timeouts.1).unwrap();
    let clock = Arc::new(ClockSync::new(0));
    let status = Arc::new(AgentStatus::default());
    let spool = Spool::open(&dir.path().join("spool"), 1 << 30).unwrap();
    let client = transport::lifecycle_client(channel);
    let hb = Heartbeat::new(
        client.clone(),
        creds.clone(),
        clock.clone(),
        status.clone(),
        spool.clone(),
        None,
        Default::default(),
    );
    let offset = hb.beat().await.unwrap();
    assert!((offset - SKEW_MS).abs() < 5_000, "{offset}");
    assert!(hb.request().warning.contains("behind the collector"));
    let old_leaf = leaf_of(&creds);

    // Renewal: fresh key, new chain on disk and in the resolver.
    let old_key = std::fs::read_to_string(&paths.key).unwrap();
    let renewer = Renewer::new(
        client.clone(),
        creds.clone(),
        paths.clone(),
        clock,
        status,
        Default::default(),
    );
    let v = renewer.renew_now().await.unwrap();
    assert_ne!(std::fs::read_to_string(&paths.key).unwrap(), old_key);
    assert_ne!(leaf_of(&creds), old_leaf);
    assert_eq!(creds.validity(), v);
    let reloaded = identity::load(&paths).unwrap();
    assert_eq!(reloaded.certified.cert[0].to_vec(), leaf_of(&creds));
    assert!(reloaded.info.unwrap().renewed_at.is_some());

    // The open connection keeps its session; a new connection, built from
    // the very same rustls config, presents the renewed certificate.
    hb.beat().await.unwrap();
    let fresh = transport::connect_lazy(tls, &endpoint, None, timeouts.0, timeouts.1).unwrap();
    Heartbeat::new(
        transport::lifecycle_client(fresh),
        creds.clone(),
        Arc::new(ClockSync::new(0)),
        Arc::default(),
        spool,
        None,
        Default::default(),
    )
    .beat()
    .await
    .unwrap();
    let calls = fake.calls.lock().unwrap().clone();
    let seen: Vec<(&str, bool)> = calls
        .iter()
        .filter(|(rpc, ..)| *rpc != "enroll")
        .map(|(rpc, leaf, _)| (*rpc, leaf.as_deref() == Some(old_leaf.as_slice())))
        .collect();
    assert_eq!(
        seen,
        [
            ("heartbeat", true),
            ("renew", true),
            ("heartbeat", true),
            ("heartbeat", false)
        ]
    );
    assert_eq!(
        calls.last().unwrap().1.as_deref(),
        Some(leaf_of(&creds).as_slice())
    );
}

#[tokio::test]
async fn agent_with_default_identity_paths_renews_when_due_and_beats() {
    // Certificates issued 6 of their 7 days ago: past the renewal window.
    let (endpoint, fake) = start(6 * DAY).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    enroll(&EnrollOptions::new(
        &endpoint,
        &fake.token,
        IdentityPaths::in_state_dir(&state),
    ))
    .await
    .unwrap();
    let toml = format!(
        "version = 1\n[agent]\nstate_dir = \"{}\"\n[source]\nhost = \"127.0.0.1\"\ndbname = \"x\"\nuser = \"x\"\n\
         [collector]\nendpoint = \"{endpoint}\"\n[heartbeat]\ninterval = \"1s\"\n\
         [[jobs]]\nname = \"j\"\nmode = \"snapshot\"\ntarget = \"t\"\nquery = \"SELECT 1\"\n",
        state.display()
    );
    let cfg = AgentConfig::parse(&toml).unwrap();
    let cancel = CancellationToken::new();
    let agent = Agent::new(cfg, cancel.clone()).unwrap();
    let before = leaf_of(agent.credentials());
    assert!(agent.renew_if_due().await.unwrap());
    assert_ne!(leaf_of(agent.credentials()), before);

    let mut background = agent.start_background(&cancel, None);
    // Wait (bounded) until at least two heartbeats have arrived.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let beats = fake
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, hb)| hb.is_some())
            .count();
        if beats >= 2 || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    while background.join_next().await.is_some() {}
    let calls = fake.calls.lock().unwrap().clone();
    let beats: Vec<&pb::HeartbeatRequest> =
        calls.iter().filter_map(|(_, _, hb)| hb.as_ref()).collect();
    assert!(beats.len() >= 2, "{} heartbeats", beats.len());
    let b = beats[0];
    assert_eq!(b.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(b.os.starts_with(std::env::consts::OS));
    let last = beats.last().unwrap();
    assert_eq!(
        last.certificate_not_after_unix_ms,
        agent.credentials().validity().not_after_ms
    );
    assert!(
        (b.clock_offset_ms - SKEW_MS).abs() < 5_000,
        "{}",
        b.clock_offset_ms
    );
    assert_eq!(b.spool_limit_bytes, 10 << 30);
    // The background task renewed the (still back-dated) certificate once
    // more at start-up, then held off instead of renewing in a loop.
    let renewals = calls.iter().filter(|(rpc, ..)| *rpc == "renew").count();
    assert_eq!(renewals, 2);
    assert!(
        calls
            .iter()
            .filter(|(rpc, ..)| *rpc != "enroll")
            .all(|(_, leaf, _)| leaf.is_some())
    );
}

/// An enrolled identity and what renewing it needs.
async fn enrolled(
    endpoint: &str,
    fake: &Fake,
    dir: &std::path::Path,
) -> (IdentityPaths, Arc<Credentials>, Renewer) {
    let paths = IdentityPaths::in_state_dir(dir);
    enroll(&EnrollOptions::new(endpoint, &fake.token, paths.clone()))
        .await
        .unwrap();
    let creds = Arc::new(Credentials::load(&paths).unwrap());
    let renewer = renewer_of(endpoint, &creds, &paths);
    (paths, creds, renewer)
}

/// A renewer for these credentials (a new one stands for a restarted agent).
fn renewer_of(endpoint: &str, creds: &Arc<Credentials>, paths: &IdentityPaths) -> Renewer {
    let channel = transport::connect_lazy(
        creds.client_config().unwrap(),
        endpoint,
        None,
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
    .unwrap();
    Renewer::new(
        transport::lifecycle_client(channel),
        creds.clone(),
        paths.clone(),
        Arc::new(ClockSync::new(0)),
        Arc::default(),
        Default::default(),
    )
}

fn files(paths: &IdentityPaths) -> Vec<String> {
    [&paths.key, &paths.cert, &paths.trust]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[tokio::test]
async fn renewal_without_the_pinned_root_is_refused_and_the_credentials_kept() {
    let (endpoint, fake) = start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let (paths, creds, renewer) = enrolled(&endpoint, &fake, dir.path()).await;
    let (before_files, before_leaf) = (files(&paths), leaf_of(&creds));

    // The answer's bundle replaces the pinned root by another one.
    *fake.renew_bundle.lock().unwrap() = Some(Ca::root("usurper").pem);
    let e = renewer.renew_now().await.unwrap_err();
    assert!(
        e.to_string()
            .contains("does not contain the pinned root CA"),
        "{e}"
    );
    assert!(!e.retriable());
    assert_eq!(files(&paths), before_files, "nothing was written");
    assert_eq!(leaf_of(&creds), before_leaf, "nothing was installed");

    // A bundle with the pinned root is accepted; the retry, by a restarted
    // agent, reused the key of the unanswered renewal (kept 0600 on disk).
    let pending = identity::pending_key_path(&paths);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pending).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(renewer);
    let renewer = renewer_of(&endpoint, &creds, &paths);
    *fake.renew_bundle.lock().unwrap() = None;
    renewer.renew_now().await.unwrap();
    assert!(!pending.exists(), "the pending key is gone once renewed");
    assert_ne!(leaf_of(&creds), before_leaf);
    let keys = fake.renew_keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "a retry asks for the same key");
    // The next renewal makes a new key.
    renewer.renew_now().await.unwrap();
    assert_ne!(fake.renew_keys.lock().unwrap()[2], keys[1]);
}

#[tokio::test]
async fn a_collector_chain_through_a_retired_issuing_ca_is_refused() {
    let (endpoint, fake) = start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, creds, renewer) = enrolled(&endpoint, &fake, dir.path()).await;
    let spool = Spool::open(&dir.path().join("spool"), 1 << 20).unwrap();
    let beat = |creds: Arc<Credentials>| {
        let (endpoint, spool) = (endpoint.clone(), spool.clone());
        async move {
            let channel = transport::connect_lazy(
                creds.client_config().unwrap(),
                &endpoint,
                None,
                Duration::from_secs(5),
                Duration::from_secs(10),
            )
            .unwrap();
            Heartbeat::new(
                transport::lifecycle_client(channel),
                creds,
                Arc::new(ClockSync::new(0)),
                Arc::default(),
                spool,
                None,
                Default::default(),
            )
            .beat()
            .await
        }
    };
    beat(creds.clone()).await.unwrap();

    // The collector retires the issuing CA its own server certificate
    // comes from (as a leaked key would be used by an impersonator).
    let retired = fake
        .issuing
        .pem
        .replace("CERTIFICATE-----", "TRANSMISSOR RETIRED CA-----");
    *fake.renew_bundle.lock().unwrap() = Some(format!("{}{retired}", fake.root.pem));
    renewer.renew_now().await.unwrap();
    let e = beat(creds.clone()).await.unwrap_err();
    let text = format!("{e:?}");
    assert!(text.contains("retired issuing CA"), "{text}");
    // Restarted from disk, the agent still refuses it.
    let reloaded = Arc::new(Credentials::load(&IdentityPaths::in_state_dir(dir.path())).unwrap());
    let e = beat(reloaded).await.unwrap_err();
    assert!(format!("{e:?}").contains("retired issuing CA"), "{e:?}");
}
