//! `cargo xtask fuzz --write-seeds`: writes a few valid inputs per target
//! into `fuzz/corpus/<target>/seed-*`, in each target's input layout (see
//! the header of each `fuzz/fuzz_targets/*.rs`). The committed corpora
//! started from these; the fuzzer's own finds are merged in beside them.
//! Two inputs come from elsewhere and are committed as they are:
//! `fuzz/corpus/csr/seed-openssl-*`, requests whose key and signature
//! algorithms differ (P-384 with SHA-256, P-256 with SHA-384), made with
//! `openssl req -new -key <key> -sha256` (rcgen cannot sign those).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use transmissor_agent::config::Mode;
use transmissor_agent::pipeline::spool::{JobMeta, Spool};
use transmissor_collector::pki::Ca;
use transmissor_proto::batch::compress;
use transmissor_proto::checksum::crc32c;
use transmissor_proto::copy_binary::{HEADER, TRAILER, encode_tuple};
use transmissor_proto::identity::{AgentUri, Ibge};
use transmissor_proto::token::Token;

type Seeds = Vec<(String, Vec<u8>)>;

fn seeds<const N: usize>(list: [(&str, Vec<u8>); N]) -> Seeds {
    list.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

pub fn write(corpus: &Path) -> Result<()> {
    let all: Vec<(&str, Seeds)> = vec![
        ("batch_frame", batch_frame()?),
        ("copy_text", copy_text()),
        ("copy_binary", copy_binary()),
        ("spool_reader", spool_reader()?),
        ("token", token()?),
        ("csr", csr()?),
        ("agent_cert", agent_cert()?),
        ("agent_config", agent_config()),
        ("signed_plan", signed_plan()),
    ];
    for (target, seeds) in all {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, bytes) in &seeds {
            let path = dir.join(format!("seed-{name}"));
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
        println!("    {target}: {} seeds", seeds.len());
    }
    Ok(())
}

/// COPY text rows like the PEC's: numbers, text with escapes, NULLs.
fn copy_rows(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            format!("{i}\tvisita {i}\\tcasa\t\\N\t2024-01-{:02}\n", i % 28 + 1).into_bytes()
        })
        .collect()
}

/// `flags | small cap u16 | raw_len u64 | crc u32 | data` (batch_frame).
fn batch_input(flags: u8, cap: u16, raw_len: u64, crc: u32, data: &[u8]) -> Vec<u8> {
    let mut v = vec![flags];
    v.extend_from_slice(&cap.to_le_bytes());
    v.extend_from_slice(&raw_len.to_le_bytes());
    v.extend_from_slice(&crc.to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn batch_frame() -> Result<Seeds> {
    let raw = copy_rows(40);
    let (len, crc) = (raw.len() as u64, crc32c(&raw));
    let z1 = compress(&raw, 1)?;
    let z3 = compress(&raw, 3)?;
    let zeros = compress(&vec![0u8; 1 << 20], 3)?;
    let mut stream = zstd::stream::Encoder::new(Vec::new(), 3)?;
    std::io::Write::write_all(&mut stream, &raw)?;
    let unsized_frame = stream.finish()?;
    Ok(seeds([
        // A valid batch under the collector's default cap, honest sizes.
        ("valid-l1", batch_input(0b0110, 0, len, crc, &z1)),
        ("valid-l3", batch_input(0b0110, 0, len, crc, &z3)),
        // The same under a small cap: TooLarge.
        ("small-cap", batch_input(0b0000, 64, len, crc, &z3)),
        // 1 MiB of zeros in a few bytes, 1 MiB cap: decodes; u16 cap: refused.
        (
            "zeros-1mib",
            batch_input(0b0101, 0, 0, crc32c(&vec![0u8; 1 << 20]), &zeros),
        ),
        ("zeros-bomb", batch_input(0b0100, 4096, 0, 0, &zeros)),
        // A frame without a content size (streaming encoder).
        ("no-size", batch_input(0b0010, 0, len, crc, &unsized_frame)),
        // Round trips (flag 8) at levels 1 and 4.
        ("round-trip-l1", batch_input(0b0000_1010, 0, 0, 0, &raw)),
        ("round-trip-l4", batch_input(0b0011_1000, 100, 0, 0, &raw)),
    ]))
}

fn copy_text() -> Seeds {
    let row = |fields: &[&[u8]]| fields.join(&0xffu8);
    let rows = |rows: &[Vec<u8>]| rows.join(&0xfeu8);
    let plain = rows(&[
        row(&[b"1", b"Maria", b"2024-01-02"]),
        row(&[b"2", &[0xfd], b"2024-01-03"]),
        row(&[b"3", b"Jo\xc3\xa3o", b""]),
    ]);
    let escapes = rows(&[
        row(&[b"tab\there", b"new\nline", b"back\\slash"]),
        row(&[b"\\N", b"\r\x08\x0c\x0b", &[0xfd]]),
    ]);
    let with = |level: u8, size: u8, body: &[u8]| {
        let mut v = vec![level, size];
        v.extend_from_slice(body);
        v
    };
    seeds([
        ("plain-one-batch", with(2, 255, &plain)),
        ("plain-row-per-batch", with(0, 0, &plain)),
        ("escapes", with(4, 3, &escapes)),
    ])
}

fn copy_binary() -> Seeds {
    let msg = |bytes: &[u8]| {
        let mut v = (bytes.len() as u16).to_le_bytes().to_vec();
        v.extend_from_slice(bytes);
        v
    };
    let tuple = |fields: &[Option<&[u8]>]| {
        let mut t = Vec::new();
        encode_tuple(fields, &mut t);
        t
    };
    let first = [
        &HEADER[..],
        &tuple(&[Some(b"\0\0\0\x01"), Some(b"Maria"), None]),
    ]
    .concat();
    let mut stream = 3i16.to_be_bytes().to_vec();
    stream.extend(msg(&first));
    stream.extend(msg(&tuple(&[Some(b"\0\0\0\x02"), None, Some(b"")])));
    stream.extend(msg(&TRAILER));
    let mut header_alone = 1i16.to_be_bytes().to_vec();
    header_alone.extend(msg(&HEADER));
    header_alone.extend(msg(&tuple(&[Some(b"x")])));
    header_alone.extend(msg(&TRAILER));
    let mut ext = HEADER.to_vec();
    ext[15..19].copy_from_slice(&4u32.to_be_bytes());
    ext.extend_from_slice(b"abcd");
    let mut with_ext = 0i16.to_be_bytes().to_vec();
    with_ext.extend(msg(&ext));
    with_ext.extend(msg(&tuple(&[])));
    seeds([
        ("stream", stream),
        ("header-alone", header_alone),
        ("header-extension", with_ext),
    ])
}

fn spool_reader() -> Result<Seeds> {
    let tmp = std::env::temp_dir().join(format!("transmissor-seeds-{}", std::process::id()));
    let spool = Spool::open(&tmp, u64::MAX / 2)?;
    let job = spool.create_job(&JobMeta {
        plan: 0,
        run_id: uuid::Uuid::now_v7(),
        job: "j".into(),
        mode: Mode::Snapshot,
        target: "t".into(),
        plan_version: "p".into(),
        columns: vec![],
        snapshot: String::new(),
        server_version: 150000,
        created_at: chrono_now(),
        copy_format: Default::default(),
        upsert: None,
    })?;
    let raw = copy_rows(30);
    job.write_batch(7, 30, &raw, 3)?;
    let file = std::fs::read(job.path().join(format!("{:010}.batch", 7)))?;
    let _ = std::fs::remove_dir_all(&tmp);
    let with = |flags: u8, seq: u32, body: &[u8]| {
        let mut v = vec![flags];
        v.extend_from_slice(&seq.to_le_bytes());
        v.extend_from_slice(body);
        v
    };
    Ok(seeds([
        ("file", with(0, 7, &file)),
        ("file-other-seq", with(0, 8, &file)),
        ("file-fix-crcs", with(2, 7, &file)),
        ("round-trip", with(1, 1, &raw)),
        ("round-trip-empty", with(5, 2, b"")),
    ]))
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

fn token() -> Result<Seeds> {
    let ibge: Ibge = "3550308".parse()?;
    let t = Token {
        ibge,
        id: "0123456789abcdef".into(),
        secret: [7; 32],
        pin: [9; 32],
    };
    let s = t.to_string();
    Ok(seeds([
        ("canonical", s.clone().into_bytes()),
        ("pasted", format!("  {s}\r\n").into_bytes()),
        ("upper-id", s.replace("abcdef", "ABCDEF").into_bytes()),
        (
            "generated",
            Token::generate("5300108".parse()?, [1; 32])
                .to_string()
                .into_bytes(),
        ),
    ]))
}

fn csr() -> Result<Seeds> {
    let mut seeds = Vec::new();
    for (name, alg) in [
        ("p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("p384", &rcgen::PKCS_ECDSA_P384_SHA384),
        ("ed25519", &rcgen::PKCS_ED25519),
    ] {
        let key = rcgen::KeyPair::generate_for(alg)?;
        // As the agent makes it (`agent/src/identity.rs`): default params.
        let csr = rcgen::CertificateParams::default().serialize_request(&key)?;
        let mut pem = vec![0u8];
        pem.extend_from_slice(csr.pem()?.as_bytes());
        let mut der = vec![1u8];
        der.extend_from_slice(csr.der());
        seeds.push((format!("{name}-pem"), pem));
        seeds.push((format!("{name}-der"), der));
    }
    // With the extensions rcgen reads from a request: a SAN, key usages.
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["agent.example".to_string()])?;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let csr = params.serialize_request(&key)?;
    let mut der = vec![1u8];
    der.extend_from_slice(csr.der());
    seeds.push(("p256-extensions-der".to_string(), der));
    Ok(seeds)
}

fn agent_cert() -> Result<Seeds> {
    let ca = Ca::generate("seed CA", Duration::from_secs(86400))?;
    let uri: AgentUri =
        "urn:transmissor:agent:3550308:0190b4a6-7c43-7d1e-9b7a-2f6d3c1e5a01".parse()?;
    let der = |pem: &str| -> Result<Vec<u8>> {
        let d: rustls::pki_types::CertificateDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
                .context("seed certificate PEM")?;
        Ok(d.to_vec())
    };
    Ok(seeds([
        (
            "agent",
            der(&ca.issue_agent(&uri, Duration::from_secs(86400))?.cert_pem)?,
        ),
        (
            "server",
            der(&ca
                .issue_server(&["collector.example".into()], Duration::from_secs(86400))?
                .cert_pem)?,
        ),
        ("ca", der(&ca.cert_pem)?),
    ]))
}

fn agent_config() -> Seeds {
    let sample = r#"version = 1
[agent]
state_dir = "/var/lib/transmissor"
[source]
host = "127.0.0.1"
dbname = "esus"
user = "leitor"
password_env = "PGPASSWORD"
statement_timeout = "30s"
[collector]
endpoint = "https://collector.example:7443"
[spool]
batch_raw_bytes = "4MiB"
[retry]
initial = "500ms"
max = "60s"
[schedule]
daily_at = ["02:30", "14:00"]
weekdays_only = true
timezone = "America/Sao_Paulo"
[heartbeat]
interval = "60s"
[[jobs]]
name = "visitas"
mode = "snapshot"
target = "tb_visitas"
query = "SELECT 1 AS x"
"#;
    seeds([
        ("sample", sample.as_bytes().to_vec()),
        (
            "every",
            sample
                .replace("daily_at = [\"02:30\", \"14:00\"]\nweekdays_only = true\ntimezone = \"America/Sao_Paulo\"", "every = \"6h\"")
                .into_bytes(),
        ),
    ])
}

/// Plans and key lists signed by the fuzz target's key (`[7; 32]`), and
/// the example plan bare and signed by another key.
fn signed_plan() -> Seeds {
    use transmissor_plan::{Kind, PublicKey, SigningKey, sign};
    let key = SigningKey::from_bytes(&[7; 32]);
    let other = SigningKey::from_bytes(&[8; 32]);
    let example = crate::demo::EXAMPLE_PLAN.as_bytes();
    let list = format!(
        "format = 1\nserial = 1\nissued_at = 2026-11-30T12:00:00Z\nkeys = [\"{}\"]\n",
        PublicKey::from(&other)
    );
    seeds([
        ("plan", sign(Kind::Plan, example, &key)),
        ("plan-other-key", sign(Kind::Plan, example, &other)),
        ("plan-bare", example.to_vec()),
        ("key-list", sign(Kind::KeyList, list.as_bytes(), &key)),
    ])
}
