//! Enrollment token parsing (`Token::from_str`): the collector parses the
//! token an unauthenticated caller sends to `Enroll`, the agent the one a
//! person pastes.
//!
//! Input: any bytes; those that are UTF-8 are parsed (the gRPC string field
//! is UTF-8).
//!
//! Asserts: never panics; an accepted token is canonical: it prints back
//! as the input (trimmed, the public hex id in lower case, the only folding
//! the parser does) and re-parses to itself; its `Debug` form never shows
//! the secret.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use transmissor_proto::token::Token;

fuzz_target!(|input: &[u8]| {
    let Ok(s) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(t) = s.parse::<Token>() else {
        return;
    };
    let printed = t.to_string();
    assert_eq!(printed.parse::<Token>().unwrap(), t);
    let mut parts: Vec<String> = s.trim().split('.').map(str::to_string).collect();
    parts[2] = parts[2].to_ascii_lowercase();
    assert_eq!(printed, parts.join("."), "accepted a non-canonical token");
    let debug = format!("{t:?}");
    assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(t.secret)));
});
