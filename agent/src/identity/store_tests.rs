//! Tests of [`super`]: layout, permissions, atomic writes, crash recovery.

use std::time::Duration;

use super::*;
use crate::identity::testpki::{Ca, agent_identity, sample_uri};

fn pki() -> (Ca, Ca) {
    let root = Ca::root("root");
    let issuing = root.issuing("issuing");
    (root, issuing)
}

#[test]
fn store_then_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let paths = IdentityPaths::in_state_dir(dir.path());
    assert!(paths.existing().is_empty());
    assert!(matches!(
        load(&paths),
        Err(IdentityError::NotEnrolled { .. })
    ));

    let (root, issuing) = pki();
    let uri = sample_uri();
    let (key, chain, trust) = agent_identity(&root, &issuing, &uri, Duration::from_secs(7 * 86400));
    store(&paths, &key, &chain, &trust).unwrap();
    let info = AgentInfo {
        agent_id: uri.agent_id,
        ibge: uri.ibge.to_string(),
        collector: "https://127.0.0.1:7443".into(),
        enrolled_at: Utc::now(),
        renewed_at: None,
        clock_offset_ms: -42,
        pinned_root: None,
    };
    write_info(&paths, &info).unwrap();

    let loaded = load(&paths).unwrap();
    assert_eq!(loaded.certified.cert.len(), 2);
    assert_eq!(loaded.trust.len(), 1);
    assert_eq!(loaded.info.as_ref(), Some(&info));
    assert_eq!(agent_uri_of(&loaded.certified.cert[0]), Some(uri));
    let life = loaded.validity.lifetime_ms();
    assert_eq!(life, 7 * 86400 * 1000);
    assert_eq!(paths.existing().len(), 3);
    assert_eq!(paths.key, dir.path().join("identity/agent.key"));
    // No leftovers.
    let names: Vec<String> = fs::read_dir(dir.path().join("identity"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with(".tmp") && !n.ends_with(".next")),
        "{names:?}"
    );
}

#[cfg(unix)]
#[test]
fn key_is_owner_only_from_creation() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let paths = IdentityPaths::in_state_dir(dir.path());
    let (root, issuing) = pki();
    let (key, chain, trust) =
        agent_identity(&root, &issuing, &sample_uri(), Duration::from_secs(3600));
    store(&paths, &key, &chain, &trust).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&paths.key), 0o600);
    assert_eq!(mode(&dir.path().join("identity")), 0o700);
    assert_eq!(mode(&paths.cert), 0o644);
    // Replaced keys are 0600 too (a fresh file, not a chmod afterwards).
    store(&paths, &key, &chain, &trust).unwrap();
    assert_eq!(mode(&paths.key), 0o600);
}

#[test]
fn write_atomic_replaces_whole_files_and_ignores_stale_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.json");
    write_atomic(&p, b"first", false).unwrap();
    fs::write(dir.path().join("f.json.tmp"), b"half-writ").unwrap();
    write_atomic(&p, b"second", false).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"second");
    assert!(!dir.path().join("f.json.tmp").exists());
}

#[test]
fn interrupted_swaps_are_finished_or_discarded() {
    let (root, issuing) = pki();
    let uri = sample_uri();
    let day = Duration::from_secs(86400);
    let (old_key, old_chain, trust) = agent_identity(&root, &issuing, &uri, day);
    let (new_key, new_chain, _) = agent_identity(&root, &issuing, &uri, 2 * day);
    let next = |p: &Path| with_suffix(p, ".next");

    // Crash after the key's .next only: the old pair stays.
    let dir = tempfile::tempdir().unwrap();
    let paths = IdentityPaths::in_state_dir(dir.path());
    store(&paths, &old_key, &old_chain, &trust).unwrap();
    write_atomic(&next(&paths.key), new_key.as_bytes(), true).unwrap();
    let l = load(&paths).unwrap();
    assert_eq!(l.validity.lifetime_ms(), 86400 * 1000);
    assert!(!next(&paths.key).exists());

    // Crash with both .next files complete: the new pair is installed.
    write_atomic(&next(&paths.key), new_key.as_bytes(), true).unwrap();
    fs::write(next(&paths.cert), &new_chain).unwrap();
    assert_eq!(
        load(&paths).unwrap().validity.lifetime_ms(),
        2 * 86400 * 1000
    );

    // Crash after the key was renamed but not the chain: finish the chain.
    store(&paths, &old_key, &old_chain, &trust).unwrap();
    fs::write(&paths.key, &new_key).unwrap();
    fs::write(next(&paths.cert), &new_chain).unwrap();
    assert_eq!(
        load(&paths).unwrap().validity.lifetime_ms(),
        2 * 86400 * 1000
    );
}

#[test]
fn mismatched_key_and_chain_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = IdentityPaths::in_state_dir(dir.path());
    let (root, issuing) = pki();
    let (key_a, _, trust) = agent_identity(&root, &issuing, &sample_uri(), Duration::from_secs(60));
    let (_, chain_b, _) = agent_identity(&root, &issuing, &sample_uri(), Duration::from_secs(60));
    store(&paths, &key_a, &chain_b, &trust).unwrap();
    let e = load(&paths).err().unwrap().to_string();
    assert!(e.contains("does not match the certificate"), "{e}");
}

#[test]
fn new_key_makes_a_p256_csr_without_the_private_key() {
    let k = new_key().unwrap();
    assert!(k.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert!(!k.csr_pem.contains("PRIVATE KEY"));
    assert!(k.key_pem.contains("PRIVATE KEY"));
    assert!(!format!("{k:?}").contains("PRIVATE"));
    let params = rcgen::CertificateSigningRequestParams::from_pem(&k.csr_pem).unwrap();
    let key = rcgen::KeyPair::from_pem(&k.key_pem).unwrap();
    use rcgen::PublicKeyData;
    assert_eq!(params.public_key.der_bytes(), key.der_bytes());
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
}

#[cfg(unix)]
#[test]
fn a_key_file_other_users_may_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let paths = IdentityPaths::in_state_dir(dir.path());
    let (root, issuing) = pki();
    let (key, chain, trust) =
        agent_identity(&root, &issuing, &sample_uri(), Duration::from_secs(86400));
    store(&paths, &key, &chain, &trust).unwrap();
    load(&paths).unwrap();
    for mode in [0o640, 0o604, 0o644] {
        fs::set_permissions(&paths.key, fs::Permissions::from_mode(mode)).unwrap();
        let e = load(&paths).err().expect("refused").to_string();
        assert!(e.contains(&paths.key.display().to_string()), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
    }
    fs::set_permissions(&paths.key, fs::Permissions::from_mode(0o600)).unwrap();
    load(&paths).unwrap();
}

#[test]
fn only_the_pinned_root_of_trust_pem_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let paths = IdentityPaths::in_state_dir(dir.path());
    let (root, issuing) = pki();
    let usurper = Ca::root("usurper");
    let uri = sample_uri();
    let (key, chain, _) = agent_identity(&root, &issuing, &uri, Duration::from_secs(86400));
    // A root added to trust.pem (by a collector, before agents refused it).
    let trust = format!("{}{}", usurper.pem, root.pem);
    store(&paths, &key, &chain, &trust).unwrap();
    let mut info = AgentInfo {
        agent_id: uri.agent_id,
        ibge: uri.ibge.to_string(),
        collector: "https://127.0.0.1:7443".into(),
        enrolled_at: Utc::now(),
        renewed_at: None,
        clock_offset_ms: 0,
        pinned_root: None,
    };
    write_info(&paths, &info).unwrap();
    assert_eq!(load(&paths).unwrap().trust.len(), 2, "no pin: all of them");

    info.pinned_root = Some(pin_hex(&spki_pin_of(&root.der).unwrap()));
    write_info(&paths, &info).unwrap();
    assert_eq!(load(&paths).unwrap().trust, vec![root.der.clone()]);

    // A trust.pem without the pinned root was edited here: used as it is
    // (the collector's chain then fails to verify).
    info.pinned_root = Some(pin_hex(&spki_pin_of(&issuing.der).unwrap()));
    write_info(&paths, &info).unwrap();
    assert_eq!(load(&paths).unwrap().trust.len(), 2);
    assert_eq!(pin_from_hex(&"ab".repeat(32)), Some([0xab; 32]));
    assert_eq!(pin_from_hex("abc"), None);
}
