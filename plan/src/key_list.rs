//! The key list: the second signed document kind, for rotating the keys
//! agents trust. Signed by a key the agent trusts now; once accepted, its
//! keys replace the trusted set (the signer need not be among them).
//!
//! ```toml
//! format = 1
//! serial = 3                          # positive, monotonic
//! issued_at = 2026-11-30T12:00:00Z
//! keys = ["ed25519:...", "ed25519:..."]   # 1 to 16, no duplicates
//! ```

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

use crate::doc::{DocError, Source};
use crate::keys::{PublicKey, TrustedKeys};

/// The only key-list format this version reads.
pub const KEY_LIST_FORMAT: u32 = 1;

/// At most this many keys in a list.
pub const MAX_KEYS: usize = 16;

/// Largest key-list document.
const MAX_KEY_LIST_BYTES: usize = 64 << 10;

/// Errors of [`KeyList::parse`]: each names the line and the field.
pub type KeyListError = DocError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyList {
    pub format: u32,
    pub serial: u64,
    pub issued_at: DateTime<Utc>,
    pub keys: Vec<PublicKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyList {
    format: Spanned<i64>,
    serial: Spanned<i64>,
    issued_at: Spanned<Datetime>,
    keys: Spanned<Vec<String>>,
}

impl KeyList {
    pub fn parse(bytes: &[u8]) -> Result<KeyList, KeyListError> {
        let src = Source::new(bytes, MAX_KEY_LIST_BYTES)?;
        let raw: RawKeyList = src.decode()?;
        if *raw.format.get_ref() != i64::from(KEY_LIST_FORMAT) {
            return Err(src.err(
                raw.format.span(),
                "format",
                format!(
                    "key list format {} is not supported: this version reads format {KEY_LIST_FORMAT}",
                    raw.format.get_ref()
                ),
            ));
        }
        let serial = u64::try_from(*raw.serial.get_ref())
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| {
                src.err(
                    raw.serial.span(),
                    "serial",
                    format!("{} must be a positive integer", raw.serial.get_ref()),
                )
            })?;
        let issued_at = src.datetime(&raw.issued_at, "issued_at")?;
        let texts = raw.keys.get_ref();
        if texts.is_empty() || texts.len() > MAX_KEYS {
            return Err(src.err(
                raw.keys.span(),
                "keys",
                format!("must list 1 to {MAX_KEYS} keys, not {}", texts.len()),
            ));
        }
        let mut keys: Vec<PublicKey> = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let field = format!("keys[{i}]");
            let at = || src.item_span("keys", i).unwrap_or_else(|| raw.keys.span());
            let key: PublicKey = text
                .parse()
                .map_err(|e| src.err(at(), &field, format!("{e}")))?;
            if keys.contains(&key) {
                return Err(src.err(
                    at(),
                    &field,
                    format!("key {} is listed twice", key.key_id()),
                ));
            }
            keys.push(key);
        }
        Ok(KeyList {
            format: KEY_LIST_FORMAT,
            serial,
            issued_at,
            keys,
        })
    }

    /// The keys as a trusted set.
    pub fn trusted(&self) -> TrustedKeys {
        self.keys.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn pk(n: u8) -> String {
        PublicKey::from(&SigningKey::from_bytes(&[n; 32])).to_string()
    }

    fn doc(keys: &[String]) -> String {
        let list: Vec<String> = keys.iter().map(|k| format!("  \"{k}\",\n")).collect();
        format!(
            "format = 1\nserial = 3\nissued_at = 2026-11-30T12:00:00Z\nkeys = [\n{}]\n",
            list.concat()
        )
    }

    #[test]
    fn parses() {
        let list = KeyList::parse(doc(&[pk(1), pk(2)]).as_bytes()).unwrap();
        assert_eq!(list.serial, 3);
        assert_eq!(list.keys.len(), 2);
        assert_eq!(list.trusted().len(), 2);
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = KeyList::parse(doc(&[pk(1), pk(1)]).as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (6, "keys[1]"), "{e}");
        assert!(e.message.contains("twice"), "{e}");

        let e = KeyList::parse(doc(&[pk(1), "ed25519:xyz".into()]).as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (6, "keys[1]"), "{e}");

        let e = KeyList::parse(doc(&[]).as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (4, "keys"), "{e}");

        let many: Vec<String> = (1..=17).map(pk).collect();
        assert!(KeyList::parse(doc(&many).as_bytes()).is_err());

        let text = doc(&[pk(1)]).replace("serial = 3", "serial = 0");
        let e = KeyList::parse(text.as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (2, "serial"), "{e}");

        let text = format!("{}extra = 1\n", doc(&[pk(1)]));
        let e = KeyList::parse(text.as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (7, "extra"), "{e}");
    }
}
