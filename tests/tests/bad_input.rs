//! Bad input gets a precise error, loads nothing, and harms nobody else:
//! identities (no certificate, another CA, unknown/revoked agent, claimed
//! municipality) and payloads (oversized, decompression bomb, corrupted,
//! conflicting, changed column type, malformed COPY binary).

use std::time::Duration;

use tonic::Code;
use uuid::Uuid;

use transmissor_proto::checksum::{TransmissionDigest, crc32c};
use transmissor_proto::pb;
use transmissor_tests::client::{self, batch};
use transmissor_tests::stack::{Job, Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("2304400", "Fortaleza");

fn begin(run: Uuid, job: &str, target: &str, cols: &[(&str, &str)]) -> pb::BeginRequest {
    pb::BeginRequest {
        run_id: run.to_string(),
        job: job.into(),
        mode: pb::Mode::Snapshot as i32,
        target: target.into(),
        columns: cols
            .iter()
            .map(|(n, t)| pb::Column {
                name: n.to_string(),
                source_type: t.to_string(),
                target_type: t.to_string(),
                pseudonymised: false,
            })
            .collect(),
        plan_version: "test".into(),
        ..Default::default()
    }
}

async fn stack() -> anyhow::Result<Stack> {
    let mut s = Stack::with_options(
        &[A, B],
        StackOptions {
            collector_extra_toml:
                "\n[load]\nmax_message_bytes = \"2MiB\"\nmax_batch_raw_bytes = \"8MiB\"\n".into(),
            ..Default::default()
        },
    )
    .await?;
    s.start_collector_in_process().await?;
    Ok(s)
}

/// Municipality B can still transmit normally.
async fn others_still_served(s: &Stack) -> anyhow::Result<()> {
    let m = s.munis[1].clone();
    s.source
        .connect(&m.db)
        .await?
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS ok_table AS SELECT g AS id FROM generate_series(1, 1000) g",
        )
        .await?;
    s.grant_reader(&m.db).await?;
    let cfg = s.agent_config(
        &m,
        &[Job::new(
            "ok",
            "snapshot",
            "ok_table",
            "SELECT * FROM ok_table",
        )],
        "",
    )?;
    let report = s.run_agent_in_process(&cfg).await?;
    assert!(report.all_committed(), "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_refusals() -> anyhow::Result<()> {
    let mut s = stack().await?;
    let a = s.munis[0].clone();
    let ep = s.endpoint();
    let cols = [("id", "integer")];

    // No client certificate: UNAUTHENTICATED, naming the missing certificate.
    let mut c = client::transmission(&ep, &s.pki.ca_cert, None)?;
    let e = c
        .begin(begin(Uuid::now_v7(), "j", "t_ident", &cols))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("no client certificate"), "{e:?}");

    // A certificate from another CA: the handshake is refused (unknown CA).
    let other =
        transmissor_collector::devcerts::generate(&s.dir.join("other-pki"), &[], &[a.ibge])?;
    let mut c = client::transmission(
        &ep,
        &s.pki.ca_cert,
        Some((&other.agents[0].cert, &other.agents[0].key)),
    )?;
    let e = c
        .begin(begin(Uuid::now_v7(), "j", "t_ident", &cols))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            Code::Unavailable | Code::Cancelled | Code::Unknown
        ),
        "{e:?}"
    );
    // The precise reason travels in the TLS alert, visible on a raw connection.
    let alert =
        transmissor_tests::identities::raw_alert(&s, &other.agents[0].cert, &other.agents[0].key)
            .await?;
    assert!(alert.contains("UnknownCA"), "{alert}");

    // Right CA, but an agent the collector does not know: PERMISSION_DENIED.
    let ca_pem = std::fs::read_to_string(&s.pki.ca_cert)?;
    let ca_key = std::fs::read_to_string(s.pki.ca_cert.with_file_name("ca.key"))?;
    let ca = transmissor_collector::pki::Ca::from_pem(&ca_pem, &ca_key)?;
    let stranger = Uuid::new_v4();
    let issued = ca.issue_agent(
        &transmissor_proto::identity::AgentUri::new(a.ibge, stranger),
        Duration::from_secs(3600),
    )?;
    std::fs::write(s.dir.join("stranger.pem"), &issued.cert_pem)?;
    std::fs::write(s.dir.join("stranger.key"), &issued.key_pem)?;
    let mut c = client::transmission(
        &ep,
        &s.pki.ca_cert,
        Some((&s.dir.join("stranger.pem"), &s.dir.join("stranger.key"))),
    )?;
    let e = c
        .begin(begin(Uuid::now_v7(), "j", "t_ident", &cols))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("unknown agent") && e.message().contains(&stranger.to_string()),
        "{e:?}"
    );

    // A payload claiming municipality B with A's certificate: refused, naming both.
    let mut c = client::transmission(&ep, &s.pki.ca_cert, Some((&a.cert, &a.key)))?;
    let mut req = begin(Uuid::now_v7(), "j", "t_ident", &cols);
    req.claimed_ibge = B.0.into();
    let e = c.begin(req).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains(B.0) && e.message().contains(A.0),
        "{e:?}"
    );

    // Revocation takes effect on the next call of an already-open connection.
    let ok = c
        .begin(begin(Uuid::now_v7(), "j", "t_ident", &cols))
        .await?;
    assert!(ok.get_ref().transmission_id > 0);
    let cfg = transmissor_collector::config::CollectorConfig::load(&s.collector_config)?;
    let pool = transmissor_collector::db::connect(&cfg.database).await?;
    transmissor_collector::registry::revoke_agent(&pool, a.agent_id, "test").await?;
    let e = c
        .begin(begin(Uuid::now_v7(), "j2", "t_ident", &cols))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("revoked"), "{e:?}");

    let analytic = s.analytic_client().await?;
    let n: i64 = analytic
        .query_one("SELECT count(*) FROM transmissor.batches", &[])
        .await?
        .get(0);
    assert_eq!(n, 0);
    others_still_served(&s).await?;
    s.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_refusals() -> anyhow::Result<()> {
    let mut s = stack().await?;
    let a = s.munis[0].clone();
    let mut c = client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&a.cert, &a.key)))?;
    let cols = [("id", "integer"), ("nome", "text")];
    let run = Uuid::now_v7();
    let id = c
        .begin(begin(run, "carga", "t_payload", &cols))
        .await?
        .into_inner()
        .transmission_id;

    // Oversized message (limit 2 MiB): refused by the gRPC layer.
    let noise: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut big = batch(id, 1, b"1\ta\n", 1);
    big.data = noise.into();
    let e = c.put_batch(big).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    assert!(
        e.message().contains("too large") || e.message().contains("message length"),
        "{e:?}"
    );

    // Decompression bomb: 100 MiB of zeros in a tiny frame, cap 8 MiB.
    let zeros = vec![0u8; 100 << 20];
    let bomb = batch(id, 1, &zeros, 1);
    assert!(bomb.data.len() < 64 << 10);
    let e = c.put_batch(bomb).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("above the limit"), "{e:?}");

    // Corrupted batch (checksum mismatch): DATA_LOSS, nothing loaded.
    let raw = b"1\tum\n2\tdois\n";
    let mut bad = batch(id, 1, raw, 2);
    bad.crc32c ^= 0xdead;
    let e = c.put_batch(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(e.message().contains("checksum"), "{e:?}");

    // Rows that do not fit the declared types: refused with the SQLSTATE,
    // never with the value (personal data) the database quoted.
    let e = c
        .put_batch(batch(id, 1, b"not-a-number\tx\n", 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("22P02 invalid_text_representation"),
        "{e:?}"
    );
    assert!(!e.message().contains("not-a-number"), "{e:?}");

    // A good batch, then the same seq with other content: ALREADY_EXISTS.
    assert!(
        !c.put_batch(batch(id, 1, raw, 2))
            .await?
            .into_inner()
            .duplicate
    );
    let e = c
        .put_batch(batch(id, 1, b"9\tnove\n", 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    // The same batch again, on purpose: acknowledged as a duplicate, not loaded twice.
    assert!(
        c.put_batch(batch(id, 1, raw, 2))
            .await?
            .into_inner()
            .duplicate
    );
    let analytic = s.analytic_client().await?;
    let visible: i64 = analytic
        .query_one("SELECT count(*) FROM analytic.t_payload", &[])
        .await?
        .get(0);
    assert_eq!(visible, 0, "nothing is visible before commit");

    // Commit with a wrong total: refused, and the transmission fails visibly.
    let mut d = TransmissionDigest::new();
    d.add(1, 2, crc32c(raw));
    let digest = d.finish();
    let e = c
        .commit(pb::CommitRequest {
            transmission_id: id,
            total_batches: 2,
            total_rows: 3,
            digest: digest.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("batches missing"), "{e:?}");
    // A hostile total costs the collector nothing: above the configured
    // maximum it is refused outright, and below it what is missing is
    // counted from the ledger, never by walking 1..=total.
    let e = c
        .commit(pb::CommitRequest {
            transmission_id: id,
            total_batches: u32::MAX,
            total_rows: 3,
            digest: digest.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("max_batches_per_transmission"),
        "{e:?}"
    );
    let e = c
        .commit(pb::CommitRequest {
            transmission_id: id,
            total_batches: 100_000,
            total_rows: 3,
            digest: digest.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .contains("99999 of 100000 batches missing (2, 3, 4,"),
        "{e:?}"
    );
    let r = c
        .commit(pb::CommitRequest {
            transmission_id: id,
            total_batches: 1,
            total_rows: 2,
            digest,
            ..Default::default()
        })
        .await?;
    assert_eq!(r.into_inner().rows, 2);
    let visible: i64 = analytic
        .query_one("SELECT count(*) FROM analytic.t_payload", &[])
        .await?
        .get(0);
    assert_eq!(visible, 2);

    // A changed type: the next transmission for the target fails, naming the
    // column and both types (added and missing columns are schema evolution,
    // tests/tests/schema_evolution.rs), and the target does not change.
    let e = c
        .begin(begin(
            Uuid::now_v7(),
            "carga",
            "t_payload",
            &[("id", "bigint"), ("sobrenome", "text")],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    for needle in [
        "column id is integer in the target but bigint in this transmission",
        "nothing was cast",
    ] {
        assert!(e.message().contains(needle), "{needle}: {e:?}");
    }
    let (state, err): (String, String) = {
        let r = analytic
            .query_one(
                "SELECT state, error FROM transmissor.transmissions ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await?;
        (r.get(0), r.get(1))
    };
    assert_eq!(state, "failed");
    assert!(err.contains("column id is integer"), "{err}");
    let columns: i64 = analytic
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = 'analytic' AND table_name = 't_payload' AND column_name = 'sobrenome'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(columns, 0, "a refused transmission adds no column");
    let visible: i64 = analytic
        .query_one("SELECT count(*) FROM analytic.t_payload", &[])
        .await?
        .get(0);
    assert_eq!(visible, 2, "the failed transmission changed nothing");

    // Unknown transmission ids and other agents' transmissions are not found.
    let e = c.put_batch(batch(999_999, 1, raw, 2)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let b = s.munis[1].clone();
    let mut cb = client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&b.cert, &b.key)))?;
    let e = cb
        .status(pb::StatusRequest {
            transmission_id: id,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    others_still_served(&s).await?;
    s.stop_collector().await?;
    Ok(())
}

/// COPY binary batches: malformed tuples and data after the trailer are
/// refused with the database's words and load nothing; an unknown format is
/// refused at `Begin`; well-formed tuples load and commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_batch_refusals() -> anyhow::Result<()> {
    use transmissor_proto::copy_binary::{TRAILER, encode_tuple};
    let mut s = stack().await?;
    let a = s.munis[0].clone();
    let mut c = client::transmission(&s.endpoint(), &s.pki.ca_cert, Some((&a.cert, &a.key)))?;
    let cols = [("id", "integer"), ("nome", "text")];

    let mut unknown = begin(Uuid::now_v7(), "bin", "t_bin", &cols);
    unknown.copy_format = 7;
    let e = c.begin(unknown).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("COPY format 7"), "{e:?}");

    let mut req = begin(Uuid::now_v7(), "bin", "t_bin", &cols);
    req.copy_format = pb::CopyFormat::Binary as i32;
    let id = c.begin(req).await?.into_inner().transmission_id;

    let tuple = |id: i32, nome: &str| {
        let mut t = Vec::new();
        encode_tuple(&[Some(&id.to_be_bytes()), Some(nome.as_bytes())], &mut t);
        t
    };
    // A field whose length runs past the end of the batch.
    let mut truncated = tuple(1, "um");
    truncated.truncate(truncated.len() - 1);
    let e = c.put_batch(batch(id, 1, &truncated, 1)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // An integer field of the wrong width.
    let mut wrong = Vec::new();
    encode_tuple(&[Some(&[0u8, 1][..]), Some(b"x")], &mut wrong);
    let e = c.put_batch(batch(id, 1, &wrong, 1)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // Tuples smuggled after an early trailer.
    let mut smuggled = tuple(1, "um");
    smuggled.extend_from_slice(&TRAILER);
    smuggled.extend_from_slice(&tuple(2, "dois"));
    let e = c.put_batch(batch(id, 1, &smuggled, 1)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Well-formed tuples load; the commit makes exactly them visible.
    let mut good = tuple(1, "um");
    good.extend_from_slice(&tuple(2, "dois"));
    assert!(
        !c.put_batch(batch(id, 1, &good, 2))
            .await?
            .into_inner()
            .duplicate
    );
    let mut d = TransmissionDigest::new();
    d.add(1, 2, crc32c(&good));
    let r = c
        .commit(pb::CommitRequest {
            transmission_id: id,
            total_batches: 1,
            total_rows: 2,
            digest: d.finish(),
            ..Default::default()
        })
        .await?;
    assert_eq!(r.into_inner().rows, 2);
    let analytic = s.analytic_client().await?;
    let rows: Vec<(i32, String)> = analytic
        .query("SELECT id, nome FROM analytic.t_bin ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![(1, "um".to_string()), (2, "dois".to_string())]);
    s.stop_collector().await?;
    Ok(())
}
