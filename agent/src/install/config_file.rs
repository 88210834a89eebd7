//! `agent.toml`: a new one is the template
//! (`installer/linux/agent.toml.in`, commented) with the install's values;
//! an existing one is edited in place (`toml_edit`: comments, order and
//! every other setting kept), so an upgrade or a repair keeps what the
//! operator added. The layout's own paths (`agent.state_dir`,
//! `source.password_file`) are always put back. Whatever comes out must
//! parse as a valid [`AgentConfig`] before it is written.

use std::path::{Path, PathBuf};

use thiserror::Error;
use toml_edit::{Array, DocumentMut, Item, TableLike, Value};

use super::layout;
use super::settings::ConfigValues;
use crate::config::{AgentConfig, ConfigError};

/// The template of a new config.
pub const TEMPLATE: &str = include_str!("../../../installer/linux/agent.toml.in");

#[derive(Debug, Error)]
pub enum ConfigFileError {
    #[error(
        "{path} is not valid TOML ({message}); fix it, or move it away and run the installer again with every value"
    )]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: `{key}` is not a table")]
    NotATable { path: PathBuf, key: &'static str },
    #[error("the configuration to write is refused: {0}")]
    Invalid(ConfigError),
}

/// The config to write (text and parsed): `existing` (its path and text)
/// or the template, with `values` set.
pub fn render(
    existing: Option<(&Path, &str)>,
    values: &ConfigValues,
) -> Result<(String, AgentConfig), ConfigFileError> {
    let (path, text) = existing.unwrap_or((Path::new(layout::CONFIG), TEMPLATE));
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigFileError::Unreadable {
                path: path.to_path_buf(),
                message: e.message().to_string(),
            })?;
    let agent = table(&mut doc, path, "agent")?;
    set(agent, "state_dir", layout::STATE_DIR);
    if let Some(i) = &values.ibge {
        set(agent, "ibge", i.as_str());
    }
    let source = table(&mut doc, path, "source")?;
    if let Some(v) = &values.db_host {
        set(source, "host", v.as_str());
    }
    if let Some(v) = values.db_port {
        set(source, "port", i64::from(v));
    }
    if let Some(v) = &values.db_name {
        set(source, "dbname", v.as_str());
    }
    if let Some(v) = &values.db_user {
        set(source, "user", v.as_str());
    }
    set(source, "password_file", layout::PASSWORD);
    if let Some(v) = &values.collector {
        set(table(&mut doc, path, "collector")?, "endpoint", v.as_str());
    }
    if let Some(keys) = &values.plan_keys {
        let keys: Array = keys.iter().map(|k| k.to_string()).collect();
        set(table(&mut doc, path, "plan")?, "keys", keys);
    }
    let text = doc.to_string();
    let cfg = AgentConfig::parse(&text).map_err(ConfigFileError::Invalid)?;
    Ok((text, cfg))
}

/// The table `key` (made when missing).
fn table<'a>(
    doc: &'a mut DocumentMut,
    path: &Path,
    key: &'static str,
) -> Result<&'a mut dyn TableLike, ConfigFileError> {
    doc.entry(key)
        .or_insert_with(toml_edit::table)
        .as_table_like_mut()
        .ok_or_else(|| ConfigFileError::NotATable {
            path: path.to_path_buf(),
            key,
        })
}

/// Sets `key` unless it already holds this value (so an unchanged value
/// keeps its exact spelling), keeping the comment after it.
fn set(t: &mut dyn TableLike, key: &str, v: impl Into<Value>) {
    let new: Value = v.into();
    match t.get_mut(key) {
        Some(Item::Value(old)) => {
            if !same(old, &new) {
                let decor = old.decor().clone();
                *old = new;
                *old.decor_mut() = decor;
            }
        }
        _ => {
            t.insert(key, Item::Value(new));
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.value() == y.value(),
        (Value::Integer(x), Value::Integer(y)) => x.value() == y.value(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same(p, q))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transmissor_plan::{PublicKey, SigningKey};

    fn key(n: u8) -> PublicKey {
        PublicKey::from(&SigningKey::from_bytes(&[n; 32]))
    }

    fn values() -> ConfigValues {
        ConfigValues {
            collector: Some("https://coletor.example.gov.br:7443".into()),
            db_host: Some("10.0.0.5".into()),
            db_port: Some(5433),
            db_name: Some("esus".into()),
            db_user: Some("leitor".into()),
            plan_keys: Some(vec![key(1)]),
            ibge: Some("3550308".parse().unwrap()),
        }
    }

    #[test]
    fn new_config_from_the_template() {
        let (text, cfg) = render(None, &values()).unwrap();
        assert_eq!(
            cfg.collector.endpoint,
            "https://coletor.example.gov.br:7443"
        );
        assert_eq!(cfg.agent.state_dir, Path::new(layout::STATE_DIR));
        assert_eq!(
            cfg.source.password_file.as_deref(),
            Some(Path::new(layout::PASSWORD))
        );
        assert_eq!(
            (cfg.source.host.as_str(), cfg.source.port),
            ("10.0.0.5", 5433)
        );
        assert_eq!(cfg.plan.keys, vec![key(1)]);
        assert_eq!(cfg.agent.ibge.as_deref(), Some("3550308"));
        assert!(text.contains("# The PEC database"), "{text}");
        // Rendering the result again with the same values changes nothing.
        let (again, _) = render(Some((Path::new("a"), &text)), &values()).unwrap();
        assert_eq!(again, text);
        let (kept, _) = render(Some((Path::new("a"), &text)), &ConfigValues::default()).unwrap();
        assert_eq!(kept, text);
    }

    #[test]
    fn existing_config_edited_in_place() {
        let (text, _) = render(None, &values()).unwrap();
        let edited = format!("{text}\n# mine\n[metrics]\nlisten = \"127.0.0.1:9464\"\n")
            .replace("port = 5433", "port = 5433 # the PEC's own cluster")
            .replace(
                "state_dir = \"/var/lib/transmissor\"",
                "state_dir = \"/srv/x\"",
            );
        let new = ConfigValues {
            db_port: Some(6543),
            plan_keys: Some(vec![key(2), key(3)]),
            ..Default::default()
        };
        let (out, cfg) = render(Some((Path::new("a"), &edited)), &new).unwrap();
        assert!(out.contains("port = 6543 # the PEC's own cluster"), "{out}");
        assert!(out.contains("# mine\n[metrics]"), "{out}");
        assert_eq!(cfg.metrics.listen.unwrap().port(), 9464);
        assert_eq!(cfg.plan.keys, vec![key(2), key(3)]);
        assert_eq!(cfg.agent.state_dir, Path::new(layout::STATE_DIR));
        assert_eq!(cfg.source.host, "10.0.0.5");
    }

    #[test]
    fn refusals() {
        let e = render(Some((Path::new("/x/agent.toml"), "version = ")), &values())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/x/agent.toml is not valid TOML"), "{e}");
        let mut v = values();
        v.collector = Some("http://plain:80".into());
        let e = render(None, &v).unwrap_err().to_string();
        assert!(e.contains("https://"), "{e}");
        // The template alone names no plan key: refused.
        assert!(render(None, &ConfigValues::default()).is_err());
    }
}
