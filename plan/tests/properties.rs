//! Property tests: untrusted bytes never panic and never verify; a signed
//! plan survives no single-byte change and no truncation; signing round-trips.

use proptest::prelude::*;
use transmissor_plan::{
    Envelope, EnvelopeError, KeyList, Kind, OpenError, Plan, PublicKey, SigningKey, TrustedKeys,
    open_key_list, open_plan, sign,
};

const PLAN: &[u8] = include_bytes!("../examples/pec-reference.plan.toml");

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn trusted() -> TrustedKeys {
    [PublicKey::from(&key())].into_iter().collect()
}

/// The byte range of the `key:` line's value in an envelope.
fn key_id_range(envelope: &[u8]) -> std::ops::Range<usize> {
    let text = std::str::from_utf8(envelope).unwrap();
    let start = text.find("\nkey: ").unwrap() + "\nkey: ".len();
    start..start + 16
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_nor_verify(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Plan::parse(&bytes);
        let _ = KeyList::parse(&bytes);
        let _ = Envelope::parse(&bytes);
        prop_assert!(open_plan(&bytes, &trusted()).is_err());
        prop_assert!(open_key_list(&bytes, &trusted()).is_err());
    }

    #[test]
    fn arbitrary_payload_behind_a_valid_header_never_verifies(
        payload in proptest::collection::vec(any::<u8>(), 1..1024),
    ) {
        let signed = sign(Kind::Plan, PLAN, &key());
        let header_len = signed.len() - PLAN.len();
        let mut forged = signed[..header_len].to_vec();
        forged.extend_from_slice(&payload);
        prop_assume!(payload != PLAN);
        prop_assert!(open_plan(&forged, &trusted()).is_err());
    }

    #[test]
    fn arbitrary_text_plans_never_panic(text in "[a-z_=\\[\\]{}\"0-9 .:,\n-]{0,400}") {
        let _ = Plan::parse(text.as_bytes());
        let _ = KeyList::parse(text.as_bytes());
    }

    #[test]
    fn any_single_byte_change_is_refused(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let signed = sign(Kind::Plan, PLAN, &key());
        let i = pos.index(signed.len());
        let mut altered = signed.clone();
        altered[i] ^= flip;
        match open_plan(&altered, &trusted()) {
            Ok(v) => prop_assert!(false, "byte {} ^ {:#x} still opened as version {}", i, flip, v.plan.version),
            Err(OpenError::Envelope(EnvelopeError::UnknownKey { .. })) => {
                prop_assert!(key_id_range(&signed).contains(&i), "UnknownKey from byte {}", i);
            }
            Err(_) => {}
        }
    }

    #[test]
    fn any_truncation_is_refused(len in 0usize..4096) {
        let signed = sign(Kind::Plan, PLAN, &key());
        let len = len % signed.len();
        prop_assert!(open_plan(&signed[..len], &trusted()).is_err());
    }

    #[test]
    fn signing_round_trips(version in 1u64..1_000_000, seed in any::<[u8; 32]>()) {
        let text = String::from_utf8(PLAN.to_vec()).unwrap()
            .replacen("version = 1\n", &format!("version = {version}\n"), 1);
        let key = SigningKey::from_bytes(&seed);
        let signed = sign(Kind::Plan, text.as_bytes(), &key);
        let keys: TrustedKeys = [PublicKey::from(&key)].into_iter().collect();
        let v = open_plan(&signed, &keys).unwrap();
        prop_assert_eq!(v.plan.version, version);
        prop_assert_eq!(v.plan, Plan::parse(text.as_bytes()).unwrap());
        prop_assert_eq!(v.key_id, PublicKey::from(&key).key_id());
    }
}

#[test]
fn every_single_byte_flip_is_refused() {
    // Exhaustive over positions for one bit, on top of the random flips above.
    let signed = sign(Kind::Plan, PLAN, &key());
    let ids = key_id_range(&signed);
    for i in 0..signed.len() {
        let mut altered = signed.clone();
        altered[i] ^= 0x01;
        match open_plan(&altered, &trusted()) {
            Ok(_) => panic!("byte {i} flipped still opens"),
            Err(OpenError::Envelope(EnvelopeError::UnknownKey { .. })) => {
                assert!(ids.contains(&i), "UnknownKey from byte {i}");
            }
            Err(_) => {}
        }
    }
}
