//! Text from an agent on an operator's terminal. Hostnames, versions,
//! warnings and error texts are chosen by the agent (a compromised one among
//! thousands included); printed as they are, an escape sequence among them
//! could clear the screen, retitle the window, rewrite earlier lines or
//! reorder text with bidirectional overrides. [`printable`] escapes all of
//! that at the point of printing.

use std::borrow::Cow;

/// Whether a character must not reach a terminal as it is: C0 controls
/// (tab and newline included), DEL, C1 controls, and the bidirectional
/// embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069).
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control or bidirectional-override character replaced by
/// its `\u{…}` escape; borrowed when there is none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi_overrides() {
        let s = "host\x1b[2J\x1b]0;pwned\x07\u{9b}31m\x7f\u{202e}gnp.exe\u{2066}\ttab\nnl";
        let out = printable(s);
        assert_eq!(
            out,
            "host\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{9b}31m\\u{7f}\\u{202e}gnp.exe\\u{2066}\\u{9}tab\\u{a}nl"
        );
        assert!(!out.chars().any(unsafe_char));
    }

    #[test]
    fn plain_text_is_borrowed() {
        let s = "São Paulo — agent 1.2.3 (Linux)";
        assert!(matches!(printable(s), Cow::Borrowed(x) if x == s));
    }
}
