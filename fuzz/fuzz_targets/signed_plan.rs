//! Signed plans and key lists (`transmissor_plan`): an agent opens whatever
//! its collector serves, and a compromised collector serves anything.
//!
//! Input: any bytes, as the envelope a collector would serve.
//!
//! Asserts: never panics (envelope, plan and key-list parsers, verification,
//! the key chain); and whatever verifies under the fuzz key is exactly what
//! that key signs for its payload — the header is canonical and nothing
//! outside the signed bytes can change what is accepted. (Deterministic
//! Ed25519 signatures make the re-signed envelope byte-identical.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use transmissor_plan::{
    Envelope, KeyChain, Kind, Plan, PublicKey, SigningKey, TrustedKeys, inspect_plan, open_key_list,
    open_plan, sign,
};

fuzz_target!(|input: &[u8]| {
    let key = SigningKey::from_bytes(&[7; 32]);
    let trusted: TrustedKeys = [PublicKey::from(&key)].into_iter().collect();
    let _ = Plan::parse(input);
    let _ = inspect_plan(input);
    if let Ok(env) = Envelope::parse(input) {
        let _ = env.verify(&trusted);
    }
    if let Ok(v) = open_plan(input, &trusted) {
        let payload = Envelope::parse(input).unwrap().payload;
        assert_eq!(sign(Kind::Plan, payload, &key), input, "accepted a non-canonical envelope");
        assert!(v.plan.version > 0);
    }
    if let Ok(v) = open_key_list(input, &trusted) {
        let payload = Envelope::parse(input).unwrap().payload;
        assert_eq!(sign(Kind::KeyList, payload, &key), input, "accepted a non-canonical envelope");
        assert!(!v.key_list.keys.is_empty());
    }
    // The fuzz key as the root: whatever list it accepts never names the
    // root as a plan key, and versions stay within bounds.
    let chain = KeyChain::follow(Some(PublicKey::from(&key)), TrustedKeys::new(), [input]);
    assert!(chain.serial == 0 || chain.accepted_lists.len() == 1);
    assert!(!chain.keys.contains(&PublicKey::from(&key)));
    assert!(chain.serial <= transmissor_plan::increments::MAX_NUMBER);
});
