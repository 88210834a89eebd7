//! The operating-system locales the tests need so that a PostgreSQL server
//! speaks another language (`lc_messages`): the server translates its
//! messages only when the locale named there exists on the machine.
//! `cargo xtask test` generates them when missing (`locale-gen`).

use std::process::Command;

/// Locales whose server messages Debian's PostgreSQL ships (it has no
/// Portuguese catalog): enough to show that redaction depends neither on the
/// wording nor on the quote characters (Spanish quotes with «…»).
pub const MESSAGE_LOCALES: &[&str] = &["es_ES.UTF-8", "fr_FR.UTF-8", "de_DE.UTF-8"];

/// `es_ES.UTF-8` as `locale -a` spells it (`es_ES.utf8`).
fn normalized(name: &str) -> String {
    match name.split_once('.') {
        Some((lang, codeset)) => {
            format!("{lang}.{}", codeset.to_ascii_lowercase().replace('-', ""))
        }
        None => name.to_string(),
    }
}

/// The locales of [`MESSAGE_LOCALES`] this machine lacks (all of them when
/// `locale -a` does not run).
pub fn missing() -> Vec<&'static str> {
    let have: Vec<String> = Command::new("locale")
        .arg("-a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(normalized)
                .collect()
        })
        .unwrap_or_default();
    MESSAGE_LOCALES
        .iter()
        .copied()
        .filter(|l| !have.contains(&normalized(l)))
        .collect()
}
