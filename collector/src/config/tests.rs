//! Tests of the collector config: parsing, defaults, refusals.

use super::*;

const OK: &str = r#"
version = 1
[server]
listen = "127.0.0.1:7443"
drain_timeout = "5s"
[tls]
ca_file = "ca.pem"
cert_file = "server.pem"
key_file = "server.key"
[database]
url = "postgres://collector@127.0.0.1:5432/analytic"
password_env = "TRANSMISSOR_DB_PASSWORD"
[load]
max_batch_raw_bytes = "16MiB"
[plans]
allow_local_jobs = true
"#;

#[test]
fn parses_durations_and_sizes() {
    let c = CollectorConfig::parse(OK).unwrap();
    assert_eq!(c.server.drain_timeout, Duration::from_secs(5));
    assert_eq!(c.load.max_batch_raw_bytes.as_u64(), 16 << 20);
    assert_eq!(c.load.target_schema, "analytic");
}

#[test]
fn unknown_fields_and_versions_refused() {
    let e = CollectorConfig::parse(&OK.replace("[load]", "[load]\nbogus = 1")).unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
    let e = CollectorConfig::parse(&OK.replace("version = 1", "version = 2")).unwrap_err();
    assert!(matches!(e, ConfigError::Version { found: 2, .. }));
}

#[test]
fn password_in_url_refused() {
    let e = CollectorConfig::parse(&OK.replace("collector@", "collector:hunter2@")).unwrap_err();
    assert!(e.to_string().contains("must not contain a password"), "{e}");
}
