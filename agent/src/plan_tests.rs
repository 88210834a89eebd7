//! Tests of [`super`]: what the keeper accepts, refuses, keeps and reports.
use super::*;

use chrono::TimeZone;
use transmissor_plan::{Kind, PublicKey, SigningKey, sign};

const SP: &str = "3550308";

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn plan(version: u64, scope: &str, expires: &str, note: &str) -> String {
    format!(
        "format = 1\nversion = {version}\nissued_at = 2026-01-01T00:00:00Z\nexpires_at = {expires}\n\
         scope = {scope}\ndescription = \"{note}\"\n\n[[jobs]]\nname = \"equipes\"\n\
         target = \"tb_dim_equipe\"\nmode = \"snapshot\"\nsql = \"SELECT * FROM tb_dim_equipe\"\n\
         schedule = {{ cron = \"0 3 * * *\" }}\n"
    )
}

fn signed(k: &SigningKey, version: u64, expires: &str) -> Vec<u8> {
    sign(
        Kind::Plan,
        plan(version, "\"all\"", expires, "x").as_bytes(),
        k,
    )
}

fn keeper(dir: &std::path::Path, pinned: &[&SigningKey]) -> PlanKeeper {
    let keys: TrustedKeys = pinned.iter().map(|k| PublicKey::from(*k)).collect();
    PlanKeeper::open(keys, SP, PlanStore::open(dir).unwrap()).unwrap()
}

const LATER: &str = "2099-01-01T00:00:00Z";

#[test]
fn accepts_keeps_across_restarts_and_flags_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let kp = keeper(dir.path(), &[&k]);
    let now = at("2026-06-01T00:00:00Z");
    let v1 = signed(&k, 1, "2026-07-01T00:00:00Z");
    assert_eq!(
        kp.offer(&v1, &[], 1, now).unwrap(),
        OfferOutcome::Accepted(1)
    );
    assert_eq!(kp.offer(&v1, &[], 1, now).unwrap(), OfferOutcome::Unchanged);
    assert!(!kp.report(now).expired);
    // Past its expiry it keeps running, flagged.
    let later = at("2026-08-01T00:00:00Z");
    let r = kp.report(later);
    assert_eq!((r.version, r.expired), (1, true));
    // A restart finds it again, verified from the pinned key.
    drop(kp);
    let kp = keeper(dir.path(), &[&k]);
    assert_eq!(kp.running().unwrap().plan.version, 1);
    // Another pinned key: the stored plan no longer verifies and is not run.
    drop(kp);
    let kp = keeper(dir.path(), &[&key(2)]);
    assert!(kp.running().is_none());
    assert!(kp.report(now).refusal.unwrap().contains("does not verify"));
}

#[test]
fn refusals_keep_the_running_plan() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let kp = keeper(dir.path(), &[&k]);
    let now = at("2026-06-01T00:00:00Z");
    assert_eq!(
        kp.offer(&signed(&k, 5, LATER), &[], 5, now).unwrap(),
        OfferOutcome::Accepted(5)
    );
    let mut tampered = signed(&k, 6, LATER);
    let n = tampered.len();
    tampered[n - 3] ^= 1;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (plan(6, "\"all\"", LATER, "x").into_bytes(), "not signed"),
        (signed(&key(9), 6, LATER), "unknown key"),
        (tampered, "altered or forged"),
        (signed(&k, 4, LATER), "older than version 5"),
        (
            sign(
                Kind::Plan,
                plan(5, "\"all\"", LATER, "other").as_bytes(),
                &k,
            ),
            "already accepted with other content",
        ),
        (signed(&k, 6, "2026-05-01T00:00:00Z"), "expired"),
        (
            sign(
                Kind::Plan,
                plan(6, "[\"3304557\"]", LATER, "x").as_bytes(),
                &k,
            ),
            "not for municipality 3550308",
        ),
    ];
    for (i, (envelope, why)) in cases.into_iter().enumerate() {
        let ad = 100 + i as u64;
        assert!(kp.should_fetch(fetch::Advertised {
            plan_version: ad,
            key_list_serial: 0
        }));
        let out = kp.offer(&envelope, &[], ad, now).unwrap();
        assert!(matches!(out, OfferOutcome::Refused(_)), "{why}: {out:?}");
        let r = kp.report(now);
        assert_eq!(r.version, 5, "{why}");
        assert!(r.refusal.as_deref().unwrap().contains(why), "{why}: {r:?}");
        // The refused announcement is not fetched again.
        assert!(!kp.should_fetch(fetch::Advertised {
            plan_version: ad,
            key_list_serial: 0
        }));
    }
    // A good plan clears the refusal.
    assert_eq!(
        kp.offer(&signed(&k, 7, LATER), &[], 7, now).unwrap(),
        OfferOutcome::Accepted(7)
    );
    assert_eq!(kp.report(now).refusal, None);
}

#[test]
fn rotation_follows_signed_key_lists_only() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, evil) = (key(1), key(2), key(9));
    let kp = keeper(dir.path(), &[&old]);
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let list = |serial: u64, to: &SigningKey, by: &SigningKey| {
        sign(
            Kind::KeyList,
            format!(
                "format = 1\nserial = {serial}\nissued_at = 2026-01-01T00:00:00Z\nkeys = [\"{}\"]\n",
                PublicKey::from(to)
            )
            .as_bytes(),
            by,
        )
    };
    // A plan by the new key alone is refused; with the list signed by the old key, accepted.
    let v2 = signed(&new, 2, LATER);
    assert!(matches!(
        kp.offer(&v2, &[], 2, now).unwrap(),
        OfferOutcome::Refused(_)
    ));
    let out = kp.offer(&v2, &[list(1, &new, &old)], 2, now).unwrap();
    assert_eq!(out, OfferOutcome::Accepted(2));
    assert_eq!(kp.key_list_serial(), 1);
    // A list signed by another key is refused and reported; trust stays.
    let v3 = signed(&evil, 3, LATER);
    let out = kp.offer(&v3, &[list(2, &evil, &evil)], 3, now).unwrap();
    assert!(matches!(out, OfferOutcome::Refused(_)));
    let r = kp.report(now);
    assert_eq!((r.version, r.key_list_serial), (2, 1));
    assert!(r.refusal.unwrap().contains("plan-key list 2 refused"));
    // After a restart the stored chain is followed again from the pinned key.
    drop(kp);
    let kp = keeper(dir.path(), &[&old]);
    assert_eq!(
        (kp.key_list_serial(), kp.running().unwrap().plan.version),
        (1, 2)
    );
}
