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
    PlanKeeper::open(
        keys,
        Some(PublicKey::from(&root())),
        SP,
        PlanStore::open(dir).unwrap(),
    )
    .unwrap()
}

/// The central team's root key (signs key lists only).
fn root() -> SigningKey {
    key(100)
}

/// A key list trusting `to`, with `extra` lines, signed by `by`.
fn key_list(serial: u64, to: &[&SigningKey], extra: &str, by: &SigningKey) -> Vec<u8> {
    let keys: Vec<String> = to
        .iter()
        .map(|k| format!("\"{}\"", PublicKey::from(*k)))
        .collect();
    sign(
        Kind::KeyList,
        format!(
            "format = 1\nserial = {serial}\nissued_at = 2026-01-01T00:00:00Z\nkeys = [{}]\n{extra}",
            keys.join(", ")
        )
        .as_bytes(),
        by,
    )
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
    let list = |serial: u64, to: &SigningKey, by: &SigningKey| key_list(serial, &[to], "", by);
    // A plan by the new key alone is refused; with the list signed by the root key, accepted.
    let v2 = signed(&new, 2, LATER);
    assert!(matches!(
        kp.offer(&v2, &[], 2, now).unwrap(),
        OfferOutcome::Refused(_)
    ));
    let out = kp.offer(&v2, &[list(1, &new, &root())], 2, now).unwrap();
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

#[test]
fn a_key_list_signed_by_a_plan_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (stolen, thief) = (key(1), key(9));
    let kp = keeper(dir.path(), &[&stolen]);
    let now = at("2026-06-01T00:00:00Z");
    // The thief holds the pinned plan key and signs a list trusting his own key.
    let takeover = key_list(1, &[&thief], "", &stolen);
    let out = kp
        .offer(&signed(&thief, 2, LATER), &[takeover], 2, now)
        .unwrap();
    assert!(
        matches!(out, OfferOutcome::Refused(Refusal::UnknownKey { .. })),
        "{out:?}"
    );
    let r = kp.report(now);
    assert_eq!(r.key_list_serial, 0);
    let why = r.refusal.unwrap();
    assert!(
        why.contains("plan-key list 1 refused") && why.contains("root key"),
        "{why}"
    );
}

#[test]
fn a_stolen_plan_key_rotated_out_signs_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (stolen, fresh) = (key(1), key(2));
    let kp = keeper(dir.path(), &[&stolen]);
    let now = at("2026-06-01T00:00:00Z");
    // The thief's plan was accepted while the key was trusted.
    assert_eq!(
        kp.offer(&signed(&stolen, 2, LATER), &[], 2, now).unwrap(),
        OfferOutcome::Accepted(2)
    );
    // The root-signed list leaves the stolen key out: its plan stops at once.
    let rotate = key_list(1, &[&fresh], "", &root());
    let out = kp
        .offer(
            &signed(&stolen, 3, LATER),
            std::slice::from_ref(&rotate),
            3,
            now,
        )
        .unwrap();
    assert!(
        matches!(out, OfferOutcome::Refused(Refusal::UnknownKey { .. })),
        "{out:?}"
    );
    assert!(kp.running().is_none(), "the stolen key's plan still runs");
    assert_eq!(kp.key_list_serial(), 1);
    // The central team's next plan, by the fresh key, is accepted.
    assert_eq!(
        kp.offer(&signed(&fresh, 3, LATER), &[rotate], 3, now)
            .unwrap(),
        OfferOutcome::Accepted(3)
    );
    // After a restart the stolen key is still out.
    drop(kp);
    let kp = keeper(dir.path(), &[&stolen]);
    assert_eq!(kp.running().unwrap().plan.version, 3);
    assert!(matches!(
        kp.offer(&signed(&stolen, 4, LATER), &[], 4, now).unwrap(),
        OfferOutcome::Refused(Refusal::UnknownKey { .. })
    ));
}

#[test]
fn a_fresh_agent_refuses_a_plan_below_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let kp = keeper(dir.path(), &[&k]);
    let now = at("2026-06-01T00:00:00Z");
    // An old plan, validly signed, replayed by the collector with the
    // current key list, whose floor is version 5 issued from 2026-01-01.
    let floor = key_list(
        1,
        &[&k],
        "min_plan_version = 5\nmin_plan_issued_at = 2026-01-01T00:00:00Z\n",
        &root(),
    );
    let out = kp
        .offer(&signed(&k, 4, LATER), std::slice::from_ref(&floor), 4, now)
        .unwrap();
    assert!(
        matches!(out, OfferOutcome::Refused(Refusal::BelowFloor(_))),
        "{out:?}"
    );
    assert!(kp.running().is_none());
    let issued_earlier = sign(
        Kind::Plan,
        plan(6, "\"all\"", LATER, "x")
            .replace(
                "issued_at = 2026-01-01T00:00:00Z",
                "issued_at = 2025-12-31T23:59:59Z",
            )
            .as_bytes(),
        &k,
    );
    assert!(matches!(
        kp.offer(&issued_earlier, &[], 6, now).unwrap(),
        OfferOutcome::Refused(Refusal::BelowFloor(_))
    ));
    assert_eq!(
        kp.offer(&signed(&k, 5, LATER), &[], 5, now).unwrap(),
        OfferOutcome::Accepted(5)
    );
}

#[test]
fn versions_cannot_jump_to_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let kp = keeper(dir.path(), &[&k]);
    let now = at("2026-06-01T00:00:00Z");
    let out = kp
        .offer(&signed(&k, 9_223_372_036_854_775_807, LATER), &[], 1, now)
        .unwrap();
    assert!(
        matches!(out, OfferOutcome::Refused(Refusal::Invalid(_))),
        "{out:?}"
    );
    assert_eq!(
        kp.offer(&signed(&k, 1, LATER), &[], 1, now).unwrap(),
        OfferOutcome::Accepted(1)
    );
    let out = kp
        .offer(&signed(&k, 1_000_002, LATER), &[], 1_000_002, now)
        .unwrap();
    assert!(
        matches!(out, OfferOutcome::Refused(Refusal::TooFarAhead { .. })),
        "{out:?}"
    );
    assert_eq!(
        kp.offer(&signed(&k, 1_000_001, LATER), &[], 1_000_001, now)
            .unwrap(),
        OfferOutcome::Accepted(1_000_001)
    );
}
