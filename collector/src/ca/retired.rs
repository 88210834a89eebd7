//! Retired issuing CAs: the deny-list of `transmissor.retired_cas`.
//!
//! `ca retire --fingerprint <SHA-256 of the CA's public key>` records an
//! earlier issuing CA of the CA directory (never the current one: rotate
//! first). From then on the collector refuses agent certificates presented
//! through it (handshake: [`crate::tls::RevokedAgents`], refreshed every 2 s;
//! every call: [`crate::identity`]), and each trust bundle sent to agents
//! (enrollment, renewal) carries it as a `TRANSMISSOR RETIRED CA` section, so
//! the agent refuses a collector chain through it too.

use std::path::Path;

use sqlx::PgPool;

use super::{CaError, IssuingCa, issuing_cas};
use crate::audit::{self, action};

/// The PEM label of a retired CA in a trust bundle.
pub const SECTION: &str = "TRANSMISSOR RETIRED CA";

#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(
        "{0:?} is not a fingerprint: give the 64 hex digits of the SHA-256 of the CA's public key, as `ca list` prints it"
    )]
    BadFingerprint(String),
    #[error("no issuing CA in {dir} has the fingerprint {fingerprint} (see `ca list`)")]
    Unknown { dir: String, fingerprint: String },
    #[error(
        "{0} is the current issuing CA: run `ca rotate` first (and restart the collectors), then retire it"
    )]
    Current(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// A certificate PEM relabelled as a retired-CA section.
pub fn as_retired_section(cert_pem: &str) -> String {
    cert_pem.replace("CERTIFICATE-----", &format!("{SECTION}-----"))
}

pub fn to_hex(fingerprint: &[u8; 32]) -> String {
    fingerprint.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits, colons and case ignored.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], RetireError> {
    let bad = || RetireError::BadFingerprint(s.to_string());
    let digits: Vec<u8> = s
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        out[i] = pair[0] << 4 | pair[1];
    }
    Ok(out)
}

/// Retires the issuing CA of `dir` with this fingerprint; idempotent.
pub async fn retire(
    pool: &PgPool,
    dir: &Path,
    fingerprint: &str,
    reason: &str,
    actor: &str,
) -> Result<IssuingCa, RetireError> {
    let fp = parse_fingerprint(fingerprint)?;
    let ca = issuing_cas(dir)?
        .into_iter()
        .find(|c| c.fingerprint == fp)
        .ok_or_else(|| RetireError::Unknown {
            dir: dir.display().to_string(),
            fingerprint: to_hex(&fp),
        })?;
    if ca.current {
        return Err(RetireError::Current(ca.subject));
    }
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO transmissor.retired_cas (spki_sha256, subject, cert_pem, retired_by, reason) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (spki_sha256) DO NOTHING",
    )
    .bind(fp.as_slice())
    .bind(&ca.subject)
    .bind(&ca.cert_pem)
    .bind(actor)
    .bind(reason)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        audit::record(
            &mut tx,
            audit::Event {
                actor: actor.to_string(),
                action: action::CA_RETIRED,
                detail: serde_json::json!({ "fingerprint": to_hex(&fp), "subject": ca.subject, "reason": reason }),
                ..Default::default()
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(ca)
}

/// Fingerprints of the retired CAs.
pub async fn retired_fingerprints(pool: &PgPool) -> Result<Vec<[u8; 32]>, sqlx::Error> {
    let keys: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT spki_sha256 FROM transmissor.retired_cas ORDER BY retired_at")
            .fetch_all(pool)
            .await?;
    Ok(keys
        .iter()
        .filter_map(|k| k.as_slice().try_into().ok())
        .collect())
}

/// Certificates (PEM) of the retired CAs, for trust bundles.
pub async fn retired_pems(conn: &mut sqlx::PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT cert_pem FROM transmissor.retired_cas ORDER BY retired_at")
        .fetch_all(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip() {
        let fp = [0xabu8; 32];
        let hex = to_hex(&fp);
        assert_eq!(parse_fingerprint(&hex).unwrap(), fp);
        assert_eq!(parse_fingerprint(&hex.to_uppercase()).unwrap(), fp);
        let colons: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_fingerprint(&colons.join(":")).unwrap(), fp);
        assert!(parse_fingerprint("abc").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn retired_sections_are_not_certificates() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let s = as_retired_section(pem);
        assert!(s.contains("BEGIN TRANSMISSOR RETIRED CA") && !s.contains("CERTIFICATE"));
    }
}
