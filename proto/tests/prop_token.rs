//! Property tests of enrollment tokens (`token::Token`, `FromStr`/`Display`).
//!
//! - Any token (any valid IBGE code, any 16-hex id, any secret and pin)
//!   prints and parses back to itself, and the printed form is canonical.
//! - Arbitrary strings, and strings shaped like tokens, never panic the
//!   parser.
//! - A token with one character changed is refused or parses to a different
//!   token: it never silently means the original one — except for a change
//!   of ASCII case in the hex id, which the parser deliberately folds (the
//!   id is public; see `id_is_read_case_insensitively`).
//!
//! Bounded case counts so the file runs in well under a second in CI.

use proptest::prelude::*;
use transmissor_proto::identity::Ibge;
use transmissor_proto::token::Token;

/// A valid IBGE code: six random digits and the one check digit that the
/// parser accepts for them (found by asking the parser, not by copying its
/// rule).
fn ibge() -> impl Strategy<Value = Ibge> {
    "[0-9]{6}".prop_map(|six| {
        (0..10)
            .find_map(|d| format!("{six}{d}").parse::<Ibge>().ok())
            .expect("some check digit is valid")
    })
}

fn token() -> impl Strategy<Value = Token> {
    (ibge(), "[0-9a-f]{16}", any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(
        |(ibge, id, secret, pin)| Token {
            ibge,
            id,
            secret,
            pin,
        },
    )
}

/// A replacement character: mostly from the alphabets a token is made of
/// (so the result often still looks like a token), sometimes anything.
fn replacement() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(
            "0123456789abcdefABCDEF-_.xtzQ=+/ \t\n"
                .chars()
                .collect::<Vec<_>>()
        ),
        1 => any::<char>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip(t in token()) {
        let s = t.to_string();
        let back: Token = s.parse().unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(back.to_string(), s.clone());
        // Surrounding whitespace (a pasted line) is tolerated.
        prop_assert_eq!(format!("  {s}\n").parse::<Token>().unwrap(), t);
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = s.parse::<Token>();
    }

    #[test]
    fn token_shaped_strings_never_panic(
        parts in proptest::collection::vec("[0-9a-zA-Z_=+/-]{0,48}", 0..7),
        prefix in prop_oneof![Just("txe1".to_string()), "[a-z0-9]{0,5}"],
    ) {
        let s = std::iter::once(prefix).chain(parts).collect::<Vec<_>>().join(".");
        if let Ok(t) = s.parse::<Token>() {
            // Whatever is accepted prints back in canonical form and re-parses.
            prop_assert_eq!(t.to_string().parse::<Token>().unwrap(), t);
        }
    }

    #[test]
    fn one_changed_character_never_means_the_same_token(
        t in token(),
        pos in any::<prop::sample::Index>(),
        c in replacement(),
    ) {
        let s = t.to_string();
        let mut chars: Vec<char> = s.chars().collect();
        let i = pos.index(chars.len());
        prop_assume!(chars[i] != c);
        chars[i] = c;
        let mutated: String = chars.into_iter().collect();
        if let Ok(other) = mutated.parse::<Token>() {
            // The one tolerated spelling of the same token: the hex id is
            // read case-insensitively (`0A1b...` is the id `0a1b...`).
            let id_range = 13..29; // "txe1." (5) + IBGE (7) + "." (1)
            let original = s.as_bytes()[i] as char; // tokens are ASCII
            let case_of_id = id_range.contains(&i)
                && c.is_ascii_hexdigit()
                && c.eq_ignore_ascii_case(&original);
            if !case_of_id {
                prop_assert_ne!(
                    &other, &t,
                    "{:?} (char {} set to {:?}) parses to the original token", mutated, i, c
                );
            }
        }
    }
}

#[test]
fn id_is_read_case_insensitively() {
    // Documents the tolerance above: the id is public (the secret and pin
    // are case-sensitive base64url), and its canonical form is lowercase.
    let t: Token = "txe1.3550308.00000000000000ab.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        .parse()
        .unwrap();
    let upper: Token = "txe1.3550308.00000000000000AB.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        .parse()
        .unwrap();
    assert_eq!(upper, t);
    assert!(upper.to_string().contains(".00000000000000ab."));
}

#[test]
fn generated_tokens_round_trip() {
    for code in ["3550308", "2304400", "4106902", "2201919"] {
        let t = Token::generate(code.parse().unwrap(), fixed_pin());
        assert_eq!(t.to_string().parse::<Token>().unwrap(), t);
    }
}

fn fixed_pin() -> [u8; 32] {
    let mut p = [0u8; 32];
    for (i, b) in p.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37);
    }
    p
}
