//! Issue #9, identity: a stolen agent key does not live forever. Only the
//! current certificate authenticates (a superseded one only for its grace
//! period, never to renew); a second key renewing the same identity is
//! refused, audited and revokes the agent; a lost renewal answer is answered
//! again; renewals are rate-limited with one audit row per window; a retired
//! issuing CA is refused at the handshake and on open connections.

use std::time::Duration;

use tonic::Code;
use transmissor_collector::ca;
use transmissor_tests::identities::{
    audit_actions, call_code, csr_for, enroll, leaf, plain_csr, raw_alert, renew, save,
};
use transmissor_tests::pg::wait_until;
use transmissor_tests::stack::{Stack, StackOptions};
use x509_parser::prelude::{FromDer, X509Certificate};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("2304400", "Fortaleza");
const DAY: Duration = Duration::from_secs(86_400);

async fn stack(munis: &[(&str, &str)], extra_toml: &str) -> anyhow::Result<Stack> {
    let mut s = Stack::with_options(
        munis,
        StackOptions {
            enrollment: true,
            collector_extra_toml: extra_toml.into(),
            ..Default::default()
        },
    )
    .await?;
    s.start_collector_in_process().await?;
    Ok(s)
}

fn serial(chain_pem: &str) -> anyhow::Result<String> {
    let der = leaf(chain_pem)?;
    Ok(X509Certificate::from_der(&der)?.1.raw_serial_as_string())
}

async fn count(s: &Stack, sql: &str) -> anyhow::Result<i64> {
    Ok(s.analytic_client().await?.query_one(sql, &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_certificates_expire_and_a_second_key_renewing_revokes() -> anyhow::Result<()> {
    let mut s = stack(&[A], "").await?;
    let (key1, csr1) = plain_csr()?;
    let r = enroll(&s, &s.issue_token(A.0, DAY).await?, &csr1).await?;
    let one = save(&s.dir, "one", &r.certificate_chain_pem, &key1)?;
    let (key2, csr2) = plain_csr()?;
    let renewed = renew(&s, (&one.0, &one.1), &csr2).await?;
    let two = save(&s.dir, "two", &renewed.certificate_chain_pem, &key2)?;

    // Within its grace period the superseded certificate still works (calls
    // on connections opened before the renewal)...
    assert_eq!(call_code(&s, (&one.0, &one.1)).await?.0, Code::NotFound);
    // ...and not after it.
    s.analytic_client()
        .await?
        .execute(
            "UPDATE transmissor.certificates SET grace_until = now() WHERE superseded_at IS NOT NULL",
            &[],
        )
        .await?;
    let (code, msg) = call_code(&s, (&one.0, &one.1)).await?;
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("replaced by a newer one"), "{msg}");
    assert_eq!(call_code(&s, (&two.0, &two.1)).await?.0, Code::NotFound);

    // The agent lost the renewal's answer and asks again with the same new
    // key: it gets the same certificate, nothing is issued.
    let again = renew(&s, (&one.0, &one.1), &csr_for(&key2)?).await?;
    assert_eq!(
        serial(&again.certificate_chain_pem)?,
        serial(&renewed.certificate_chain_pem)?
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM transmissor.certificates").await?,
        2
    );

    // Someone else holding the first key renews with another key: refused,
    // alerted, and the agent is revoked (both sides stop).
    let (_key3, csr3) = plain_csr()?;
    let e = renew(&s, (&one.0, &one.1), &csr3).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("another key renewed"), "{e:?}");
    let actions = audit_actions(&s).await?;
    assert!(
        actions.iter().any(|a| a == "agent.parallel_renewal"),
        "{actions:?}"
    );
    let (code, msg) = call_code(&s, (&two.0, &two.1)).await?;
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("revoked"), "{msg}");
    assert_eq!(
        count(&s, "SELECT count(*) FROM transmissor.certificates").await?,
        2,
        "nothing issued to the second key"
    );
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_certificate_renewing_twice_at_once_issues_once() -> anyhow::Result<()> {
    // The same certificate (one key) renews twice in parallel with two new
    // keys: the row lock lets one through; the other is a parallel chain.
    let mut s = stack(&[A], "\n[enrollment]\nrevoke_on_parallel_renewal = false\n").await?;
    let (key1, csr1) = plain_csr()?;
    let r = enroll(&s, &s.issue_token(A.0, DAY).await?, &csr1).await?;
    let one = save(&s.dir, "one", &r.certificate_chain_pem, &key1)?;
    let (a, b) = (plain_csr()?.1, plain_csr()?.1);
    let (ra, rb) = tokio::join!(
        renew(&s, (&one.0, &one.1), &a),
        renew(&s, (&one.0, &one.1), &b)
    );
    assert_eq!(
        [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{ra:?} {rb:?}"
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM transmissor.certificates").await?,
        2
    );
    // Not revoked (configured so), yet alerted.
    assert!(
        audit_actions(&s)
            .await?
            .iter()
            .any(|a| a == "agent.parallel_renewal")
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM transmissor.agents WHERE revoked_at IS NULL"
        )
        .await?,
        1
    );
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_are_rate_limited_and_a_flood_adds_one_audit_row() -> anyhow::Result<()> {
    let mut s = stack(
        &[A],
        "\n[enrollment]\nmax_renewals = 2\nrenewal_window = \"1h\"\n",
    )
    .await?;
    let (key, csr) = plain_csr()?;
    let r = enroll(&s, &s.issue_token(A.0, DAY).await?, &csr).await?;
    let mut current = save(&s.dir, "c0", &r.certificate_chain_pem, &key)?;
    for i in 1..=2 {
        let (key, csr) = plain_csr()?;
        let r = renew(&s, (&current.0, &current.1), &csr).await?;
        current = save(&s.dir, &format!("c{i}"), &r.certificate_chain_pem, &key)?;
    }
    for _ in 0..10 {
        let e = renew(&s, (&current.0, &current.1), &plain_csr()?.1)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("renewals are limited"), "{e:?}");
    }
    assert_eq!(
        count(&s, "SELECT count(*) FROM transmissor.certificates").await?,
        3
    );
    let refused = audit_actions(&s)
        .await?
        .iter()
        .filter(|a| *a == "agent.renewal_refused")
        .count();
    assert_eq!(
        refused, 1,
        "one audit row per window, however many refusals"
    );
    assert_eq!(
        count(&s, "SELECT renew_refusals::bigint FROM transmissor.agents").await?,
        10
    );
    // The current certificate still works for everything else.
    assert_eq!(
        call_code(&s, (&current.0, &current.1)).await?.0,
        Code::NotFound
    );
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_issuing_ca_is_refused() -> anyhow::Result<()> {
    let mut s = stack(&[A, B], "").await?;
    let (key_a, csr_a) = plain_csr()?;
    let ra = enroll(&s, &s.issue_token(A.0, DAY).await?, &csr_a).await?;
    let a = save(&s.dir, "a", &ra.certificate_chain_pem, &key_a)?;

    // Rotate, restart, enroll B under the new issuing CA.
    s.stop_collector().await?;
    let dir = s.ca_dir.clone().expect("ca dir");
    ca::rotate(&dir, &s.root_key(), &[])?;
    s.start_collector_in_process().await?;
    let (key_b, csr_b) = plain_csr()?;
    let rb = enroll(&s, &s.issue_token(B.0, DAY).await?, &csr_b).await?;
    let b = save(&s.dir, "b", &rb.certificate_chain_pem, &key_b)?;
    let mut open = transmissor_tests::client::transmission(
        &s.endpoint(),
        &s.server_trust,
        Some((&a.0, &a.1)),
    )?;
    let status = transmissor_proto::pb::StatusRequest { transmission_id: 1 };
    assert_eq!(
        open.status(status).await.unwrap_err().code(),
        Code::NotFound
    );

    // The current issuing CA cannot be retired; the earlier one can.
    let cas = ca::issuing_cas(&dir)?;
    let pool = s.collector_pool().await?;
    let current = cas.iter().find(|c| c.current).expect("current CA");
    let e = ca::retired::retire(
        &pool,
        &dir,
        &ca::retired::to_hex(&current.fingerprint),
        "",
        "test",
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("ca rotate"), "{e}");
    let old = cas.iter().find(|c| !c.current).expect("earlier CA");
    ca::retired::retire(
        &pool,
        &dir,
        &ca::retired::to_hex(&old.fingerprint),
        "key leaked",
        "test",
    )
    .await?;

    // The open connection: refused on its next call.
    let e = open.status(status).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("retired issuing CA"), "{e:?}");
    // New handshakes: refused once the deny-list refreshes (every 2 s).
    let refused = wait_until(Duration::from_secs(10), || async {
        raw_alert(&s, &a.0, &a.1)
            .await
            .map(|x| x.contains("CertificateRevoked"))
            .unwrap_or(false)
    })
    .await;
    assert!(refused, "{}", raw_alert(&s, &a.0, &a.1).await?);
    // The new CA's agents are unaffected, and agents are told.
    assert_eq!(call_code(&s, (&b.0, &b.1)).await?.0, Code::NotFound);
    let r = renew(&s, (&b.0, &b.1), &plain_csr()?.1).await?;
    assert!(
        r.trust_bundle_pem.contains("BEGIN TRANSMISSOR RETIRED CA"),
        "{}",
        r.trust_bundle_pem
    );
    assert!(audit_actions(&s).await?.iter().any(|x| x == "ca.retired"));
    s.stop_collector().await?;
    Ok(())
}
