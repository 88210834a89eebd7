//! Plan keys under compromise, end to end with the real binaries: the
//! offline signer's root and plan keys, `transmissor-collector plan
//! publish`, and an agent in central mode pinning both.
//!
//! - A freshly installed agent refuses a validly signed plan older than the
//!   floor of the root-signed key list, even when the collector serves it.
//! - A stolen plan key rotated out by a root-signed key list can no longer
//!   publish or sign an accepted plan, and the plan it signed stops.

use anyhow::Result;

use transmissor_tests::pec::Scale;
use transmissor_tests::plans::{
    EQUIPES, LATER, PlanKey, agent_plan_section, collector_plan_keys, plan_toml, run_now,
};
use transmissor_tests::stack::{Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_and_a_rotation_hold_against_a_replaying_collector() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let root = PlanKey::generate_root(keys.path(), "root")?;
    let stolen = PlanKey::generate(keys.path(), "k1")?;
    let fresh = PlanKey::generate(keys.path(), "k2")?;
    let mut stack = Stack::with_options(
        &[A],
        StackOptions {
            plans_required: true,
            plans_extra: collector_plan_keys(&[&stolen], Some(&root)),
            ..Default::default()
        },
    )
    .await?;
    let m = stack.munis[0].clone();
    stack.load_pec(&m, 1, &Scale::tiny()).await?;
    stack.start_collector().await?;
    let dir = stack.dir.clone();
    let plan = |key: &PlanKey, version: u64| {
        key.sign_plan(
            &dir,
            &format!("v{version}"),
            &plan_toml(version, "\"all\"", LATER, "p", &[EQUIPES]),
        )
    };

    // Version 3, validly signed, published long ago; then the root-signed
    // key list sets the floor at version 5. The collector still serves v3
    // (it is the newest row), as one replaying old plans would.
    let v3 = plan(&stolen, 3)?;
    stack.publish_plan("v3", &v3)?;
    let kl1 = root.sign_key_list_with(&dir, 1, &[&stolen], "min_plan_version = 5\n")?;
    assert!(
        stack
            .publish_plan("keys-1", &kl1)?
            .contains("plan-key list 1 published")
    );
    stack.wait_served(&m, &v3).await?;
    // A freshly installed agent follows the list and refuses v3: with no
    // plan accepted, it has nothing to run.
    let cfg = stack.agent_config(&m, &[], &agent_plan_section(&[&stolen], Some(&root)))?;
    let (ok, out) = run_now(&cfg, &[])?;
    assert!(!ok, "{out}");
    assert!(
        out.contains("plan-key list accepted")
            && out.contains("version 3 is below version 5, the lowest plan-key list 1 allows")
            && out.contains("no plan to run"),
        "{out}"
    );
    // Version 5 is accepted.
    let v5 = plan(&stolen, 5)?;
    stack.publish_plan("v5", &v5)?;
    stack.wait_served(&m, &v5).await?;
    let (ok, out) = run_now(&cfg, &[])?;
    assert!(ok, "{out}");
    stack
        .agent_plan_state(&m, |s| s.plan_version == Some(5))
        .await?;

    // k1 is stolen: the root-signed list 2 trusts k2 only. The thief can no
    // longer publish; a compromised collector serves his plan anyway, the
    // agent refuses it, and v5 (signed by k1) stops.
    let kl2 = root.sign_key_list(&dir, 2, &[&fresh])?;
    stack.publish_plan("keys-2", &kl2)?;
    let v6 = plan(&stolen, 6)?;
    let err = stack.publish_plan("v6", &v6).unwrap_err().to_string();
    assert!(err.contains("not trusted"), "{err}");
    stack.serve_raw_plan(&v6).await?;
    stack.wait_served(&m, &v6).await?;
    let (ok, out) = run_now(&cfg, &[])?;
    assert!(!ok, "{out}");
    assert!(
        out.contains("running plan withdrawn")
            && out.contains("no longer trusts key")
            && out.contains("signed by an unknown key")
            && out.contains("no plan to run"),
        "{out}"
    );
    // The central team's next plan, signed by k2, runs.
    let v7 = plan(&fresh, 7)?;
    stack.publish_plan("v7", &v7)?;
    stack.wait_served(&m, &v7).await?;
    let (ok, out) = run_now(&cfg, &[])?;
    assert!(ok, "{out}");
    let s = stack
        .agent_plan_state(&m, |s| s.plan_version == Some(7))
        .await?;
    assert_eq!(s.plan_refusal, None);
    Ok(())
}

/// A collector without `[plans] keys` (a development one, with local jobs)
/// stores no plan: it cannot verify one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_plan_keys_nothing_is_published() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let k1 = PlanKey::generate(keys.path(), "k1")?;
    let stack = Stack::with_options(&[A], StackOptions::default()).await?;
    let v1 = k1.sign_plan(
        &stack.dir,
        "v1",
        &plan_toml(1, "\"all\"", LATER, "p", &[EQUIPES]),
    )?;
    let err = stack.publish_plan("v1", &v1).unwrap_err().to_string();
    assert!(err.contains("plans.keys is not set"), "{err}");
    Ok(())
}
