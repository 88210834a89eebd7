//! Enrollment and the certificate lifecycle, as the collector enforces it:
//! one-time tokens (single use, expiring, bound to a municipality), what an
//! issued certificate may contain whatever the CSR asks, renewal,
//! re-enrollment, revocation on open and new connections, expired
//! certificates, concurrency, heartbeats and the audit log.

use std::path::PathBuf;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use tonic::Code;
use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;
use transmissor_proto::pb::enrollment_client::EnrollmentClient;
use transmissor_tests::client;
use transmissor_tests::identities::{audit_actions, enroll, leaf, plain_csr, raw_alert, save};
use transmissor_tests::pg::wait_until;
use transmissor_tests::stack::{Stack, StackOptions};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("2304400", "Fortaleza");
const DAY: Duration = Duration::from_secs(86_400);

async fn stack(munis: &[(&str, &str)], ca_extra: &str) -> anyhow::Result<Stack> {
    let mut s = Stack::with_options(
        munis,
        StackOptions {
            enrollment: true,
            ca_extra: ca_extra.into(),
            ..Default::default()
        },
    )
    .await?;
    s.start_collector_in_process().await?;
    Ok(s)
}

/// A CSR that asks for far more than it may get.
fn greedy_csr() -> anyhow::Result<(KeyPair, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["evil.example".to_string()])?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.subject_alt_names.push(SanType::URI(
        format!("urn:transmissor:agent:{}:{}", B.0, uuid::Uuid::new_v4()).try_into()?,
    ));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let csr = params.serialize_request(&key)?;
    Ok((key, csr.pem()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_certificates_renewal_and_audit() -> anyhow::Result<()> {
    let mut s = stack(&[A, B], "").await?;
    let token = s.issue_token(A.0, DAY).await?;

    // The CSR asks for a CA, a server EKU, a DNS name and B's identity: it gets none of them.
    let (key, csr) = greedy_csr()?;
    let r = enroll(&s, &token, &csr).await?;
    assert_eq!(r.ibge, A.0);
    let der = leaf(&r.certificate_chain_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)?;
    let sans: Vec<String> = cert
        .subject_alternative_name()?
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|g| format!("{g:?}"))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        sans,
        vec![format!(
            "URI(\"urn:transmissor:agent:{}:{}\")",
            A.0, r.agent_id
        )]
    );
    assert!(!cert.is_ca(), "issued certificate is a CA");
    let eku = cert
        .extended_key_usage()?
        .map(|e| e.value.clone())
        .expect("EKU present");
    assert!(eku.client_auth && !eku.server_auth && !eku.any, "{eku:?}");
    assert!(
        cert.raw_serial().len() >= 8,
        "serial too short to be random"
    );
    let now = chrono::Utc::now().timestamp();
    let (nb, na) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    assert!(nb <= now - 240, "NotBefore is back-dated");
    assert!(
        (na - now - 7 * 86_400).abs() < 120,
        "7-day lifetime, got {}s",
        na - now
    );
    assert!(
        !cert
            .subject_alternative_name()?
            .unwrap()
            .value
            .general_names
            .iter()
            .any(|g| matches!(g, GeneralName::DNSName(_)))
    );

    // The certificate works for data calls.
    let (chain, keyf) = save(&s.dir, "a1", &r.certificate_chain_pem, &key)?;
    let mut tx = client::transmission(&s.endpoint(), &s.server_trust, Some((&chain, &keyf)))?;
    let e = tx
        .status(pb::StatusRequest { transmission_id: 1 })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::NotFound,
        "authenticated, nothing to find: {e:?}"
    );

    // Reuse, another municipality, garbage, expiry.
    let e = enroll(&s, &token, &plain_csr()?.1).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("already used"), "{e:?}");
    let other = s.issue_token(A.0, DAY).await?;
    let forged = other.replace(&format!(".{}.", A.0), &format!(".{}.", B.0));
    let e = enroll(&s, &forged, &plain_csr()?.1).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("unknown enrollment token"), "{e:?}");
    let e = enroll(&s, "txe1.not.a.token", &plain_csr()?.1)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let expiring = s.issue_token(B.0, DAY).await?;
    let id = expiring.split('.').nth(2).unwrap_or_default().to_string();
    s.analytic_client()
        .await?
        .execute("UPDATE transmissor.enrollment_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", &[&id])
        .await?;
    let e = enroll(&s, &expiring, &plain_csr()?.1).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("expired"), "{e:?}");
    let pool = s.collector_pool().await?;
    assert_eq!(
        transmissor_collector::enroll::audit_expired_tokens(&pool).await?,
        1
    );

    // Renewal: a fresh key, the same agent id, another serial.
    let mut lc = AgentLifecycleClient::new(client::channel(
        &s.endpoint(),
        &s.server_trust,
        Some((&chain, &keyf)),
    )?);
    let (key2, csr2) = plain_csr()?;
    let renewed = lc
        .renew(pb::RenewRequest { csr_pem: csr2 })
        .await?
        .into_inner();
    let der2 = leaf(&renewed.certificate_chain_pem)?;
    let (_, cert2) = X509Certificate::from_der(&der2)?;
    assert_ne!(cert2.raw_serial(), cert.raw_serial());
    assert_eq!(
        cert2.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&key2).as_slice()
    );
    assert!(format!("{:?}", cert2.subject_alternative_name()?).contains(&r.agent_id));

    // Re-enrollment: a new agent id, the previous agent revoked.
    let again = enroll(&s, &other, &plain_csr()?.1).await?;
    assert_ne!(again.agent_id, r.agent_id);
    let rows = transmissor_collector::registry::list_agents(&pool, true).await?;
    let first = rows
        .iter()
        .find(|a| a.id.to_string() == r.agent_id)
        .expect("first agent listed");
    assert!(
        first.revoked_at.is_some(),
        "previous agent revoked on re-enrollment"
    );

    let actions = audit_actions(&s).await?;
    for a in [
        "token.issued",
        "token.consumed",
        "agent.enrolled",
        "token.refused",
        "token.expired",
        "agent.renewed",
        "agent.revoked",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "audit log lacks {a}: {actions:?}"
        );
    }
    // Append-only.
    let e = s
        .analytic_client()
        .await?
        .execute("DELETE FROM transmissor.audit_log", &[])
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("append-only") || format!("{e:?}").contains("append-only"),
        "{e:?}"
    );
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_certificates_are_refused() -> anyhow::Result<()> {
    let mut s = stack(&[A], "").await?;
    let token = s.issue_token(A.0, DAY).await?;
    let (key, csr) = plain_csr()?;
    let r = enroll(&s, &token, &csr).await?;
    let (chain, keyf) = save(&s.dir, "a", &r.certificate_chain_pem, &key)?;
    let mut open = client::transmission(&s.endpoint(), &s.server_trust, Some((&chain, &keyf)))?;
    assert_eq!(
        open.status(pb::StatusRequest { transmission_id: 1 })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let pool = s.collector_pool().await?;
    let agent: uuid::Uuid = r.agent_id.parse()?;
    transmissor_collector::registry::revoke(&pool, Some(agent), None, "test", "operator:test")
        .await?;
    // The already-open connection: refused on its next call.
    let e = open
        .status(pb::StatusRequest { transmission_id: 1 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("revoked"), "{e:?}");
    // New handshakes: refused once the revocation set refreshes (every 2 s).
    let refused = wait_until(Duration::from_secs(10), || async {
        raw_alert(&s, &chain, &keyf)
            .await
            .map(|a| a.contains("CertificateRevoked"))
            .unwrap_or(false)
    })
    .await;
    assert!(
        refused,
        "new handshake not refused: {}",
        raw_alert(&s, &chain, &keyf).await?
    );

    // An expired certificate (for a valid agent) fails the handshake as expired.
    let token = s.issue_token(A.0, DAY).await?;
    let (key, csr) = plain_csr()?;
    let r = enroll(&s, &token, &csr).await?;
    let ca = transmissor_collector::ca::load(s.ca_dir.as_ref().expect("ca dir"))?;
    let uri = transmissor_proto::identity::AgentUri::new(A.0.parse()?, r.agent_id.parse()?);
    let short = ca
        .issuing
        .sign_agent_key(&uri, &key, Duration::from_secs(1))?;
    let (chain, keyf) = save(&s.dir, "expired", &ca.chain_for(&short), &key)?;
    let expired = wait_until(Duration::from_secs(10), || async {
        raw_alert(&s, &chain, &keyf)
            .await
            .map(|a| a.contains("CertificateExpired"))
            .unwrap_or(false)
    })
    .await;
    assert!(
        expired,
        "expired certificate not refused as expired: {}",
        raw_alert(&s, &chain, &keyf).await?
    );
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_enrollments_and_heartbeats() -> anyhow::Result<()> {
    let mut s = stack(&[A, B], "").await?;
    let mut tokens = Vec::new();
    for i in 0..100 {
        tokens.push(
            s.issue_token(if i % 2 == 0 { A.0 } else { B.0 }, DAY)
                .await?,
        );
    }
    let mut set = tokio::task::JoinSet::new();
    for t in tokens {
        let (endpoint, trust) = (s.endpoint(), s.server_trust.clone());
        set.spawn(async move {
            let (key, csr) = plain_csr()?;
            let channel = client::channel(&endpoint, &trust, None)?;
            let r = EnrollmentClient::new(channel)
                .enroll(pb::EnrollRequest {
                    token: t,
                    csr_pem: csr,
                    ..Default::default()
                })
                .await?
                .into_inner();
            anyhow::Ok((r, key))
        });
    }
    let mut enrolled = Vec::new();
    while let Some(r) = set.join_next().await {
        enrolled.push(r??);
    }
    assert_eq!(enrolled.len(), 100);
    let c = s.analytic_client().await?;
    let serials: i64 = c
        .query_one(
            "SELECT count(DISTINCT serial) FROM transmissor.certificates",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(serials, 100);
    let ids: std::collections::HashSet<_> =
        enrolled.iter().map(|(r, _)| r.agent_id.clone()).collect();
    assert_eq!(ids.len(), 100);
    // Re-enrollment revoked all but the last agent of each municipality, despite the concurrency.
    let active: i64 = c
        .query_one(
            "SELECT count(*) FROM transmissor.agents WHERE revoked_at IS NULL",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(active, 2);

    // Heartbeats: the active agents report; one stays silent.
    let pool = s.collector_pool().await?;
    let actives: Vec<String> = c
        .query(
            "SELECT id::text FROM transmissor.agents WHERE revoked_at IS NULL ORDER BY ibge",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (r, key) = enrolled
        .iter()
        .find(|(r, _)| r.agent_id == actives[0])
        .expect("active agent");
    let (chain, keyf) = save(&s.dir, "hb", &r.certificate_chain_pem, key)?;
    let mut lc = AgentLifecycleClient::new(client::channel(
        &s.endpoint(),
        &s.server_trust,
        Some((&chain, &keyf)),
    )?);
    let before = chrono::Utc::now().timestamp_millis();
    let hb = lc
        .heartbeat(pb::HeartbeatRequest {
            agent_version: "9.9.9".into(),
            os: "linux-x86_64".into(),
            spool_used_bytes: 10,
            spool_limit_bytes: 100,
            clock_offset_ms: 1500,
            last_runs: vec![pb::JobRunStatus {
                job: "visitas".into(),
                outcome: "committed".into(),
                rows: 5,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(
        hb.collector_time_unix_ms >= before,
        "the collector returns its time"
    );
    let written = wait_until(Duration::from_secs(10), || async {
        transmissor_collector::registry::list_agents(&pool, false)
            .await
            .map(|rows| {
                rows.iter()
                    .any(|a| a.agent_version.as_deref() == Some("9.9.9"))
            })
            .unwrap_or(false)
    })
    .await;
    assert!(written, "heartbeat never written");
    let table = transmissor_collector::registry::render_agents(
        &transmissor_collector::registry::list_agents(&pool, false).await?,
    );
    assert!(
        table.contains("visitas=committed") && table.contains("+1.5s") && table.contains("10%"),
        "{table}"
    );
    assert!(
        table.contains("never"),
        "the silent agent shows it was never seen:\n{table}"
    );
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_serves_old_and_new_chains() -> anyhow::Result<()> {
    let mut s = stack(&[A, B], "").await?;
    // Agent A enrolls under the first issuing CA.
    let (key_a, csr_a) = plain_csr()?;
    let ra = enroll(&s, &s.issue_token(A.0, DAY).await?, &csr_a).await?;
    let (chain_a, keyf_a) = save(&s.dir, "rot-a", &ra.certificate_chain_pem, &key_a)?;

    // Rotate the issuing CA (with the offline root key) and restart the collector.
    s.stop_collector().await?;
    let ca_dir = s.ca_dir.clone().expect("ca dir");
    transmissor_collector::ca::rotate(&ca_dir, &s.root_key(), &[])?;
    s.start_collector_in_process().await?;

    // Agent B enrolls under the new issuing CA; the issuers differ.
    let (key_b, csr_b) = plain_csr()?;
    let rb = enroll(&s, &s.issue_token(B.0, DAY).await?, &csr_b).await?;
    let (chain_b, keyf_b) = save(&s.dir, "rot-b", &rb.certificate_chain_pem, &key_b)?;
    let issuer = |chain: &str| -> anyhow::Result<String> {
        let der = leaf(chain)?;
        Ok(X509Certificate::from_der(&der)?.1.issuer().to_string())
    };
    assert_ne!(
        issuer(&ra.certificate_chain_pem)?,
        issuer(&rb.certificate_chain_pem)?
    );

    // Both chains are accepted, without re-enrolling A.
    for (chain, key) in [(&chain_a, &keyf_a), (&chain_b, &keyf_b)] {
        let mut c = client::transmission(&s.endpoint(), &s.server_trust, Some((chain, key)))?;
        let e = c
            .status(pb::StatusRequest { transmission_id: 1 })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "authenticated: {e:?}");
    }
    // A's next renewal moves it to the new issuing CA.
    let mut lc = AgentLifecycleClient::new(client::channel(
        &s.endpoint(),
        &s.server_trust,
        Some((&chain_a, &keyf_a)),
    )?);
    let renewed = lc
        .renew(pb::RenewRequest {
            csr_pem: plain_csr()?.1,
        })
        .await?
        .into_inner();
    assert_eq!(
        issuer(&renewed.certificate_chain_pem)?,
        issuer(&rb.certificate_chain_pem)?
    );
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_agents_heartbeat_and_a_silent_one_shows_its_last_seen() -> anyhow::Result<()> {
    const N: usize = 40;
    let mut s = stack(&[A], "revoke_previous_on_enroll = false").await?;
    let mut identities = Vec::new();
    for i in 0..N {
        let (key, csr) = plain_csr()?;
        let r = enroll(&s, &s.issue_token(A.0, DAY).await?, &csr).await?;
        identities.push((
            r.agent_id.clone(),
            save(&s.dir, &format!("hb{i}"), &r.certificate_chain_pem, &key)?,
        ));
    }
    heartbeat_all(&s, &identities, 1).await?;
    let pool = s.collector_pool().await?;
    let all_seen = wait_until(Duration::from_secs(10), || async {
        transmissor_collector::registry::list_agents(&pool, false)
            .await
            .map(|rows| {
                rows.iter()
                    .filter(|a| a.agent_version.as_deref() == Some("1.0.1"))
                    .count()
                    == N
            })
            .unwrap_or(false)
    })
    .await;
    assert!(all_seen, "not every heartbeat was recorded");
    let c = s.analytic_client().await?;
    let first_seen: String = c
        .query_one(
            "SELECT heartbeat_at::text FROM transmissor.agents WHERE id = $1::text::uuid",
            &[&identities[0].0],
        )
        .await?
        .get(0);

    // All but the first agent beat again; the first stays silent.
    identities.remove(0);
    let silent_id = {
        let rows = transmissor_collector::registry::list_agents(&pool, false).await?;
        rows.iter()
            .map(|a| a.id.to_string())
            .find(|id| !identities.iter().any(|(x, _)| x == id))
            .expect("the silent agent")
    };
    heartbeat_all(&s, &identities, 2).await?;
    let updated = wait_until(Duration::from_secs(10), || async {
        transmissor_collector::registry::list_agents(&pool, false)
            .await
            .map(|rows| {
                rows.iter()
                    .filter(|a| a.agent_version.as_deref() == Some("1.0.2"))
                    .count()
                    == N - 1
            })
            .unwrap_or(false)
    })
    .await;
    assert!(updated);
    let silent_seen: String = c
        .query_one(
            "SELECT heartbeat_at::text FROM transmissor.agents WHERE id = $1::text::uuid",
            &[&silent_id],
        )
        .await?
        .get(0);
    assert_eq!(
        silent_seen, first_seen,
        "the silent agent keeps its last-seen time"
    );
    let table = transmissor_collector::registry::render_agents(
        &transmissor_collector::registry::list_agents(&pool, false).await?,
    );
    let line = table
        .lines()
        .find(|l| l.starts_with(&silent_id))
        .expect("silent agent listed");
    assert!(line.contains("s ago") && line.contains("1.0.1"), "{line}");
    s.stop_collector().await?;
    Ok(())
}

/// One heartbeat from each identity, all at once.
async fn heartbeat_all(
    s: &Stack,
    identities: &[(String, (PathBuf, PathBuf))],
    round: u64,
) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for (_, (chain, key)) in identities {
        let (chain, key) = (chain.clone(), key.clone());
        let (endpoint, trust) = (s.endpoint(), s.server_trust.clone());
        set.spawn(async move {
            let mut lc = AgentLifecycleClient::new(client::channel(
                &endpoint,
                &trust,
                Some((&chain, &key)),
            )?);
            lc.heartbeat(pb::HeartbeatRequest {
                agent_version: format!("1.0.{round}"),
                spool_used_bytes: round,
                spool_limit_bytes: 100,
                ..Default::default()
            })
            .await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}
