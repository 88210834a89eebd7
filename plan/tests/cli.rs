//! The offline signer end to end: keygen → check → sign → verify.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_transmissor-plan");
const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/pec-reference.plan.toml"
);

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run transmissor-plan")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn keygen_check_sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("plan.key");
    let signed = dir.path().join("plan.signed");

    let o = run(&["keygen", "--out", p(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let public = out.lines().next().unwrap().to_string();
    assert!(public.starts_with("ed25519:"), "{out}");
    assert!(out.contains("key id: "), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let o = run(&["pubkey", "--key", p(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().next(), Some(public.as_str()));

    let o = run(&["check", EXAMPLE]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("lista_hipertensos"), "{}", stdout(&o));

    let o = run(&["sign", "--key", p(&key), EXAMPLE, "--out", p(&signed)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&signed).unwrap();
    assert!(bytes.starts_with(b"transmissor-signed v1\nkind: plan\n"));

    let o = run(&["verify", "--pubkey", &public, p(&signed)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("kind: plan"), "{}", stdout(&o));
    assert!(stdout(&o).contains("version: 1"), "{}", stdout(&o));

    // Another key does not verify it.
    let other = dir.path().join("other.key");
    let o = run(&["keygen", "--out", p(&other)]);
    let other_public = stdout(&o).lines().next().unwrap().to_string();
    let o = run(&["verify", "--pubkey", &other_public, p(&signed)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not trusted"), "{}", stderr(&o));

    // A key list signed by the root key, naming only the new plan key.
    let root = dir.path().join("root.key");
    let o = run(&["keygen", "--root", "--out", p(&root)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root_public = stdout(&o).lines().next().unwrap().to_string();
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!("format = 1\nserial = 2\nissued_at = 2026-11-30T12:00:00Z\nkeys = [\"{other_public}\"]\n"),
    )
    .unwrap();
    let keys_signed = dir.path().join("keys.signed");
    // A plan key cannot sign a key list, nor the root key a plan.
    let o = run(&[
        "sign-keys",
        "--key",
        p(&key),
        p(&keys),
        "--out",
        p(&keys_signed),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a root key"), "{}", stderr(&o));
    let o = run(&["sign", "--key", p(&root), EXAMPLE, "--out", p(&signed)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a plan signing key"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "sign-keys",
        "--key",
        p(&root),
        p(&keys),
        "--out",
        p(&keys_signed),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["verify", "--pubkey", &root_public, p(&keys_signed)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("serial: 2"), "{}", stdout(&o));
}

#[test]
fn check_and_sign_refuse_an_invalid_plan() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("plan.key");
    assert!(run(&["keygen", "--out", p(&key)]).status.success());
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replacen("30 2 * * 1-5", "61 2 * * *", 1);
    std::fs::write(&bad, text).unwrap();

    let o = run(&["check", p(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("jobs[0].schedule.cron: \"61 2 * * *\" is not a valid cron expression"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("line "), "{}", stderr(&o));

    let out = dir.path().join("bad.signed");
    let o = run(&["sign", "--key", p(&key), p(&bad), "--out", p(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.exists());
}

/// A personal-data value renamed or wrapped in a function, or a whole row,
/// is refused by `check` and `sign`, naming the job, the column and the
/// expression.
#[test]
fn check_and_sign_refuse_personal_data_under_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("plan.key");
    assert!(run(&["keygen", "--out", p(&key)]).status.success());
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let anchor = "       c.nu_telefone_celular,\n";
    assert!(example.contains(anchor));
    for (added, expected) in [
        (
            "       'tel:' || c.nu_telefone_celular AS contato,\n",
            "job lista_hipertensos: column contato is computed from nu_telefone_celular, personal data (phone), by `'tel:' || c.nu_telefone_celular`, and has no policy",
        ),
        (
            "       row_to_json(c)::text AS dados,\n",
            "job lista_hipertensos: column dados (`row_to_json(c)::TEXT`) may carry personal data that the SQL does not show: `c` reads whole rows of table tb_fat_cidadao_pec",
        ),
    ] {
        let bad = dir.path().join("bad.toml");
        let text = example.replacen(anchor, &format!("{anchor}{added}"), 1);
        std::fs::write(&bad, text).unwrap();

        let o = run(&["check", p(&bad)]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));

        let out = dir.path().join("bad.signed");
        let o = run(&["sign", "--key", p(&key), p(&bad), "--out", p(&out)]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));
        assert!(!out.exists());
    }
}

#[test]
fn keygen_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("plan.key");
    assert!(run(&["keygen", "--out", p(&key)]).status.success());
    let before = std::fs::read(&key).unwrap();
    let o = run(&["keygen", "--out", p(&key)]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[cfg(unix)]
#[test]
fn a_group_readable_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("plan.key");
    assert!(run(&["keygen", "--out", p(&key)]).status.success());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["pubkey", "--key", p(&key)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
}
