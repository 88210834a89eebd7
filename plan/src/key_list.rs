//! The key list: the second signed document kind, for rotating the plan
//! keys agents trust. Signed only by the **root key** (kept offline, never
//! a plan key; [`crate::chain`]); once accepted, its keys replace the
//! trusted plan keys, so a stolen plan key is rotated out by a list that
//! leaves it out.
//!
//! ```toml
//! format = 1
//! serial = 3                          # positive, monotonic, at most 2^53, steps of at most 1,000,000
//! issued_at = 2026-11-30T12:00:00Z
//! keys = ["ed25519:...", "ed25519:..."]   # plan keys: 1 to 16, no duplicates, not the root key
//! min_plan_version = 40               # optional: agents refuse plans below this version
//! min_plan_issued_at = 2026-11-01T00:00:00Z  # optional: and plans issued before this time
//! root = "ed25519:..."                # optional: the next root key (rotating the root itself)
//! ```
//!
//! The two `min_plan_*` fields are the **floor**: a freshly installed agent
//! that follows this list refuses an older plan, however validly signed,
//! that a collector replays to it.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

use crate::doc::{DocError, Source};
use crate::increments::MAX_NUMBER;
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
    /// The plan keys.
    pub keys: Vec<PublicKey>,
    /// The lowest plan version agents accept after this list (0: none).
    pub min_plan_version: u64,
    /// Agents refuse plans issued before this time.
    pub min_plan_issued_at: Option<DateTime<Utc>>,
    /// The next root key, when this list rotates the root.
    pub root: Option<PublicKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyList {
    format: Spanned<i64>,
    serial: Spanned<i64>,
    issued_at: Spanned<Datetime>,
    keys: Spanned<Vec<String>>,
    #[serde(default)]
    min_plan_version: Option<Spanned<i64>>,
    #[serde(default)]
    min_plan_issued_at: Option<Spanned<Datetime>>,
    #[serde(default)]
    root: Option<Spanned<String>>,
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
            .filter(|&v| v > 0 && v <= MAX_NUMBER)
            .ok_or_else(|| {
                src.err(
                    raw.serial.span(),
                    "serial",
                    format!(
                        "{} must be a positive integer of at most {MAX_NUMBER} (2^53)",
                        raw.serial.get_ref()
                    ),
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
        let min_plan_version = match &raw.min_plan_version {
            None => 0,
            Some(v) => u64::try_from(*v.get_ref())
                .ok()
                .filter(|&n| n <= MAX_NUMBER)
                .ok_or_else(|| {
                    src.err(
                        v.span(),
                        "min_plan_version",
                        format!(
                            "{} must be an integer from 0 to {MAX_NUMBER} (2^53)",
                            v.get_ref()
                        ),
                    )
                })?,
        };
        let min_plan_issued_at = raw
            .min_plan_issued_at
            .as_ref()
            .map(|t| src.datetime(t, "min_plan_issued_at"))
            .transpose()?;
        let root = match &raw.root {
            None => None,
            Some(text) => {
                let key: PublicKey = text
                    .get_ref()
                    .parse()
                    .map_err(|e| src.err(text.span(), "root", format!("{e}")))?;
                if keys.contains(&key) {
                    return Err(src.err(
                        text.span(),
                        "root",
                        format!(
                            "key {} is also a plan key: the root key must be kept apart from the keys that sign plans",
                            key.key_id()
                        ),
                    ));
                }
                Some(key)
            }
        };
        Ok(KeyList {
            format: KEY_LIST_FORMAT,
            serial,
            issued_at,
            keys,
            min_plan_version,
            min_plan_issued_at,
            root,
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

        let text = doc(&[pk(1)]).replace("serial = 3", "serial = 9223372036854775807");
        let e = KeyList::parse(text.as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (2, "serial"), "{e}");

        let text = format!("{}root = \"{}\"\n", doc(&[pk(1)]), pk(1));
        let e = KeyList::parse(text.as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (7, "root"), "{e}");
    }

    #[test]
    fn floor_and_root() {
        let list = KeyList::parse(doc(&[pk(1)]).as_bytes()).unwrap();
        assert_eq!(
            (list.min_plan_version, list.min_plan_issued_at, list.root),
            (0, None, None)
        );
        let text = format!(
            "{}min_plan_version = 40\nmin_plan_issued_at = 2026-11-01T00:00:00Z\nroot = \"{}\"\n",
            doc(&[pk(1)]),
            pk(2)
        );
        let list = KeyList::parse(text.as_bytes()).unwrap();
        assert_eq!(list.min_plan_version, 40);
        assert_eq!(
            list.min_plan_issued_at.map(|t| t.to_rfc3339()),
            Some("2026-11-01T00:00:00+00:00".into())
        );
        assert_eq!(list.root, Some(pk(2).parse().unwrap()));
    }
}
