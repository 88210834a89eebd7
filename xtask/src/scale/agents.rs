//! Agent identities: a certificate from the development CA, a municipality
//! and a TLS connection each, registered in the control schema.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::Channel;
use uuid::Uuid;

use transmissor_agent::pipeline::transport::connect_lazy;
use transmissor_collector::pki::Ca;
use transmissor_proto::identity::{AgentUri, Ibge};
use transmissor_tests::stack::Stack;

#[derive(Clone)]
pub struct Agent {
    pub ibge: Ibge,
    pub id: Uuid,
    /// Its own connection: lazily opened, with its own certificate.
    pub channel: Channel,
    /// Its TLS configuration and the collector's endpoint, for the new
    /// connections of the probe ([`Agent::fresh_channel`]).
    tls: Arc<rustls::ClientConfig>,
    endpoint: Arc<str>,
}

impl Agent {
    /// Another channel with this agent's certificate: its first call opens
    /// a new TCP + TLS connection, dropping it closes that connection.
    pub fn fresh_channel(&self) -> Result<Channel> {
        channel(self.tls.clone(), &self.endpoint)
    }
}

/// A lazily connecting channel as the agent makes it (its timeouts).
fn channel(tls: Arc<rustls::ClientConfig>, endpoint: &str) -> Result<Channel> {
    let (connect, request) = (Duration::from_secs(10), Duration::from_secs(30));
    let name = Some("localhost".to_string());
    Ok(connect_lazy(tls, endpoint, name, connect, request)?)
}

/// IBGE code `900000 + i` and its check digit (rule in `proto/src/identity.rs`).
fn synthetic_ibge(i: usize) -> Result<Ibge> {
    let prefix = format!("{:06}", 900_000 + i);
    let digit = |(k, c): (usize, u8)| {
        let p = u32::from(c - b'0') * if k % 2 == 0 { 1 } else { 2 };
        p / 10 + p % 10
    };
    let sum: u32 = prefix.bytes().enumerate().map(digit).sum();
    Ok(format!("{prefix}{}", (10 - sum % 10) % 10).parse()?)
}

/// Issues `n` agent certificates from the stack's development CA, on all cores.
pub async fn issue(pki: &Path, endpoint: &str, n: usize) -> Result<Vec<Agent>> {
    let read = |f: &str| {
        let p = pki.join(f);
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    };
    let ca_pem = read("ca.pem")?;
    let ca = Ca::from_pem(&ca_pem, &read("ca.key")?).context("loading the development CA")?;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.context("CA certificate PEM")?)?;
    }
    let shared = Arc::new((ca, Arc::new(roots), endpoint.to_string()));
    let workers = std::thread::available_parallelism().map_or(2, |c| c.get());
    let mut handles = Vec::new();
    for w in 0..workers {
        let shared = shared.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            (w * n / workers..(w + 1) * n / workers)
                .map(|i| issue_one(&shared.0, &shared.1, &shared.2, i))
                .collect::<Result<Vec<_>>>()
        }));
    }
    let mut agents = Vec::with_capacity(n);
    for h in handles {
        agents.extend(h.await.context("certificate worker")??);
    }
    Ok(agents)
}

/// One agent: certificate, TLS configuration and channel (the blocking
/// pool runs inside the runtime's context, which the channel needs).
fn issue_one(ca: &Ca, roots: &Arc<RootCertStore>, endpoint: &str, i: usize) -> Result<Agent> {
    let (ibge, id) = (synthetic_ibge(i)?, Uuid::new_v4());
    let issued = ca.issue_agent(&AgentUri::new(ibge, id), Duration::from_secs(86_400))?;
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("agent certificate PEM")?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).context("agent key PEM")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tls = Arc::new(cfg);
    let channel = channel(tls.clone(), endpoint)?;
    let endpoint = Arc::from(endpoint);
    Ok(Agent {
        ibge,
        id,
        channel,
        tls,
        endpoint,
    })
}

/// Registers all municipalities and agents with two statements.
pub async fn register(stack: &Stack, agents: &[Agent]) -> Result<()> {
    let c = stack.analytic_client().await?;
    let ibges: Vec<String> = agents.iter().map(|a| a.ibge.to_string()).collect();
    let names: Vec<String> = ibges.iter().map(|i| format!("Sintético {i}")).collect();
    let ids: Vec<Uuid> = agents.iter().map(|a| a.id).collect();
    let sql = "INSERT INTO transmissor.municipalities (ibge, name) \
               SELECT * FROM unnest($1::text[], $2::text[])";
    (c.execute(sql, &[&ibges, &names]).await).context("registering municipalities")?;
    let sql =
        "INSERT INTO transmissor.agents (id, ibge) SELECT * FROM unnest($1::uuid[], $2::text[])";
    (c.execute(sql, &[&ids, &ibges]).await).context("registering agents")?;
    Ok(())
}
