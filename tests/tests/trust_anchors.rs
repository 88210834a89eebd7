//! Trust anchors and the keys behind them, with a real collector, real TLS
//! and real gRPC: a collector that adds a root of its own to the trust
//! bundle gets it trusted by no agent (renewal or enrollment), the root CA
//! key cannot stay beside the collector, and lifetimes have upper bounds in
//! the config and on the command line.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use transmissor_agent::identity::clock::ClockSync;
use transmissor_agent::identity::credentials::{Credentials, Trust};
use transmissor_agent::identity::enroll::{EnrollOptions, enroll};
use transmissor_agent::identity::renew::Renewer;
use transmissor_agent::identity::{self, IdentityPaths};
use transmissor_agent::pipeline::transport;
use transmissor_collector::config::CollectorConfig;
use transmissor_tests::stack::{Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("2304400", "Fortaleza");
const DAY: Duration = Duration::from_secs(86_400);

async fn stack() -> Result<Stack> {
    Stack::with_options(
        &[A, B],
        StackOptions {
            enrollment: true,
            ..Default::default()
        },
    )
    .await
}

/// A self-signed root CA an attacker controls, and a server certificate
/// for `localhost` it signed.
fn usurper() -> Result<(String, CertificateDer<'static>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "usurper root CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = params.self_signed(&key)?;
    let issuer = Issuer::from_params(&params, &key);
    let leaf_key = KeyPair::generate()?;
    let leaf =
        CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&leaf_key, &issuer)?;
    Ok((root.pem(), leaf.der().clone()))
}

fn renewer_of(endpoint: &str, creds: &Arc<Credentials>, paths: &IdentityPaths) -> Result<Renewer> {
    let channel = transport::connect_lazy(
        creds.client_config()?,
        endpoint,
        None,
        Duration::from_secs(5),
        Duration::from_secs(20),
    )?;
    Ok(Renewer::new(
        transport::lifecycle_client(channel),
        creds.clone(),
        paths.clone(),
        Arc::new(ClockSync::new(0)),
        Arc::default(),
        Default::default(),
    ))
}

/// Whether the agent's verifier, over what `paths` holds, accepts `leaf`
/// (with `intermediates`) as `localhost`.
fn accepts(
    paths: &IdentityPaths,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<bool> {
    let loaded = identity::load(paths)?;
    let trust = Trust::new(&loaded.trust, &loaded.retired)?;
    Ok(trust
        .verify_server_cert(
            leaf,
            intermediates,
            &ServerName::try_from("localhost")?,
            &[],
            UnixTime::now(),
        )
        .is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_cannot_add_a_trust_anchor() -> Result<()> {
    let mut s = stack().await?;
    s.start_collector_in_process().await?;
    let ca_dir = s.ca_dir.clone().expect("ca dir");
    let paths = IdentityPaths::in_state_dir(&s.dir.join("agent-a"));
    let token = s.issue_token(A.0, DAY).await?;
    enroll(&EnrollOptions::new(&s.endpoint(), &token, paths.clone())).await?;
    let trust_before = std::fs::read(&paths.trust)?;

    // The collector is compromised: the trust bundle it sends now also
    // carries a root of the attacker's (its own root stays first, so tokens
    // still pin the real one).
    let (usurper_root, usurper_leaf) = usurper()?;
    s.stop_collector().await?;
    let root_pem = ca_dir.join("root.pem");
    let real_root = std::fs::read_to_string(&root_pem)?;
    std::fs::write(&root_pem, format!("{real_root}{usurper_root}"))?;
    s.start_collector_in_process().await?;

    // A legitimate renewal still goes through...
    let creds = Arc::new(Credentials::load(&paths)?);
    let leaf_before = creds.current().cert[0].clone();
    renewer_of(&s.endpoint(), &creds, &paths)?
        .renew_now()
        .await?;
    assert_ne!(creds.current().cert[0], leaf_before, "renewed");
    // ...but the extra root was refused: trust.pem is unchanged, and the
    // agent refuses a "collector" certificate of the attacker's root.
    assert_eq!(
        std::fs::read(&paths.trust)?,
        trust_before,
        "trust.pem unchanged"
    );
    assert_eq!(identity::load(&paths)?.trust.len(), 1);
    assert!(!accepts(&paths, &usurper_leaf, &[])?);
    let server_chain =
        CertificateDer::pem_file_iter(ca_dir.join("server.pem"))?.collect::<Result<Vec<_>, _>>()?;
    assert!(
        accepts(&paths, &server_chain[0], &server_chain[1..])?,
        "the real collector is still trusted"
    );

    // An agent enrolling now does not take the extra root either.
    let paths_b = IdentityPaths::in_state_dir(&s.dir.join("agent-b"));
    let token = s.issue_token(B.0, DAY).await?;
    enroll(&EnrollOptions::new(&s.endpoint(), &token, paths_b.clone())).await?;
    assert_eq!(std::fs::read_to_string(&paths_b.trust)?, real_root);
    assert!(!accepts(&paths_b, &usurper_leaf, &[])?);
    assert!(accepts(&paths_b, &server_chain[0], &server_chain[1..])?);
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_does_not_serve_beside_the_root_key() -> Result<()> {
    let mut s = stack().await?;
    let ca_dir = s.ca_dir.clone().expect("ca dir");
    assert!(!ca_dir.join("root.key").exists(), "ca init keeps it out");
    assert!(s.root_key().exists());

    // Someone copies the root key back next to the issuing key.
    std::fs::copy(s.root_key(), ca_dir.join("root.key"))?;
    let e = s
        .start_collector_in_process()
        .await
        .expect_err("refused to start");
    let text = format!("{e:#}");
    assert!(
        text.contains(&ca_dir.join("root.key").display().to_string()),
        "{text}"
    );
    assert!(text.contains("offline"), "{text}");

    // Moved offline again; but a server key other users may read is
    // refused too (`[tls] key_file`), naming the file and the fix.
    std::fs::remove_file(ca_dir.join("root.key"))?;
    let server_key = ca_dir.join("server.key");
    let private = std::fs::metadata(&server_key)?.permissions();
    std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o644))?;
    let e = s
        .start_collector_in_process()
        .await
        .expect_err("refused to start with a readable server key");
    let text = format!("{e:#}");
    assert!(
        text.contains(&server_key.display().to_string()) && text.contains("chmod 600"),
        "{text}"
    );
    std::fs::set_permissions(&server_key, private)?;

    // Then the collector starts and enrolls agents.
    s.start_collector_in_process().await?;
    let paths = IdentityPaths::in_state_dir(&s.dir.join("agent-a"));
    let token = s.issue_token(A.0, DAY).await?;
    enroll(&EnrollOptions::new(&s.endpoint(), &token, paths)).await?;
    s.stop_collector().await?;
    Ok(())
}

/// A collector config with these lines in its `[ca]` section.
fn with_ca(lines: &str) -> String {
    format!(
        r#"
version = 1
[server]
listen = "127.0.0.1:7443"
[tls]
ca_file = "ca.pem"
cert_file = "server.pem"
key_file = "server.key"
[database]
url = "postgres://collector@127.0.0.1:5432/analytic"
password_env = "TRANSMISSOR_DB_PASSWORD"
[plans]
allow_local_jobs = true
[ca]
dir = "ca"
{lines}
"#
    )
}

#[test]
fn lifetimes_beyond_their_bounds_are_refused_in_the_config() {
    let c = CollectorConfig::parse(&with_ca("")).unwrap();
    let ca = c.ca.expect("[ca]");
    assert_eq!(ca.agent_cert_lifetime, 7 * DAY);
    CollectorConfig::parse(&with_ca(
        "agent_cert_lifetime = \"90d\"\ntoken_ttl = \"30d\"",
    ))
    .unwrap();
    for (lines, field) in [
        ("agent_cert_lifetime = \"91d\"", "ca.agent_cert_lifetime"),
        ("agent_cert_lifetime = \"10y\"", "ca.agent_cert_lifetime"),
        ("agent_cert_lifetime = \"0s\"", "ca.agent_cert_lifetime"),
        ("token_ttl = \"31d\"", "ca.token_ttl"),
        ("token_ttl = \"0s\"", "ca.token_ttl"),
        (
            "agent_cert_lifetime = \"1h\"\nnot_before_backdate = \"2h\"",
            "ca.not_before_backdate",
        ),
    ] {
        let e = CollectorConfig::parse(&with_ca(lines))
            .err()
            .unwrap_or_else(|| panic!("{lines} was accepted"))
            .to_string();
        assert!(e.contains(field), "{lines}: {e}");
    }
}

#[test]
fn token_issue_refuses_a_ttl_beyond_30_days() -> Result<()> {
    let run = |ttl: &str| -> Result<(bool, String)> {
        let out =
            std::process::Command::new(transmissor_tests::procs::bin("transmissor-collector")?)
                .args(["token", "issue", "--config", "/nonexistent/collector.toml"])
                .args(["--ibge", A.0, "--ttl", ttl])
                .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    for ttl in ["31d", "1y", "0s"] {
        let (ok, err) = run(ttl)?;
        assert!(!ok);
        assert!(err.contains("at most 30days"), "{ttl}: {err}");
    }
    // Within the bound, the flag is accepted (and the missing config is
    // what fails).
    let (ok, err) = run("30d")?;
    assert!(!ok);
    assert!(!err.contains("at most"), "{err}");
    assert!(err.contains("/nonexistent/collector.toml"), "{err}");
    Ok(())
}
