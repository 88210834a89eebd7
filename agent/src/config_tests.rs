//! Tests of [`super`]: parsing, strictness, defaults, secrets kept out of `Debug`.
use super::*;

pub(crate) const SAMPLE: &str = r#"
version = 1
[agent]
state_dir = "/tmp/transmissor-test"
[source]
host = "127.0.0.1"
dbname = "esus"
user = "leitor"
password_env = "PGPASS_TEST"
statement_timeout = "30s"
[collector]
endpoint = "https://127.0.0.1:7443"
ca_file = "ca.pem"
cert_file = "agent.pem"
key_file = "agent.key"
[spool]
batch_raw_bytes = "1MiB"
[schedule]
daily_at = ["02:30"]
weekdays_only = true
[[jobs]]
name = "visitas"
mode = "snapshot"
target = "tb_visitas"
query = "SELECT 1 AS x"
"#;

#[test]
fn parses_sample() {
    let c = AgentConfig::parse(SAMPLE).unwrap();
    assert_eq!(c.source.statement_timeout, Duration::from_secs(30));
    assert_eq!(c.spool.batch_raw_bytes.as_u64(), 1 << 20);
    assert_eq!(c.jobs[0].mode, Mode::Snapshot);
    assert!(c.plan_version().starts_with("config:"));
}

#[test]
fn strictness() {
    for (from, to, needle) in [
        ("version = 1", "version = 7", "version 7"),
        ("[spool]", "[spool]\nbatch_size = 3", "batch_size"),
        ("mode = \"snapshot\"", "mode = \"upsert\"", "upsert"),
        (
            "target = \"tb_visitas\"",
            "target = \"tb visitas\"",
            "not a valid name",
        ),
        (
            "https://127.0.0.1:7443",
            "http://127.0.0.1:7443",
            "https://",
        ),
        ("\"02:30\"", "\"2h30\"", "HH:MM"),
    ] {
        let e = AgentConfig::parse(&SAMPLE.replace(from, to))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{from} -> {to}: {e}");
    }
}

#[test]
fn identity_files_default_to_the_state_dir() {
    let text = SAMPLE
        .replace("ca_file = \"ca.pem\"\n", "")
        .replace("cert_file = \"agent.pem\"\n", "")
        .replace("key_file = \"agent.key\"\n", "");
    let c = AgentConfig::parse(&text).unwrap();
    let id = Path::new("/tmp/transmissor-test/identity");
    assert_eq!(c.identity_dir(), id);
    assert_eq!(c.cert_file(), id.join("agent.pem"));
    assert_eq!(c.key_file(), id.join("agent.key"));
    assert_eq!(c.ca_file(), id.join("trust.pem"));
    assert_eq!(c.heartbeat.interval, Duration::from_secs(60));

    // Explicit paths are kept, relative to the config file.
    let c = AgentConfig::parse(SAMPLE)
        .unwrap()
        .resolve_relative(Path::new("/etc/transmissor-agent"));
    assert_eq!(c.cert_file(), Path::new("/etc/transmissor-agent/agent.pem"));
    assert_eq!(c.key_file(), Path::new("/etc/transmissor-agent/agent.key"));
    assert_eq!(c.ca_file(), Path::new("/etc/transmissor-agent/ca.pem"));
}

#[test]
fn heartbeat_section() {
    let with =
        |body: &str| SAMPLE.replace("[schedule]", &format!("[heartbeat]\n{body}\n[schedule]"));
    let c = AgentConfig::parse(&with("interval = \"5m\"")).unwrap();
    assert_eq!(c.heartbeat.interval, Duration::from_secs(300));
    let e = AgentConfig::parse(&with("every = \"5m\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("every"), "{e}");
    let e = AgentConfig::parse(&with("interval = \"10ms\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("heartbeat.interval"), "{e}");
}

#[test]
fn password_never_in_debug() {
    let c = AgentConfig::parse(SAMPLE).unwrap();
    let d = format!("{c:?}");
    assert!(d.contains("PGPASS_TEST"));
    assert!(!d.contains("password:"));
}

#[test]
fn zstd_level_is_auto_by_default_or_forced() {
    let c = AgentConfig::parse(SAMPLE).unwrap();
    assert_eq!(c.spool.zstd_level, ZstdLevel::Auto);
    assert!(!c.upload.ever_limited());
    for (value, expected) in [
        ("\"auto\"", ZstdLevel::Auto),
        ("9", ZstdLevel::Fixed(9)),
        ("-3", ZstdLevel::Fixed(-3)),
        ("19", ZstdLevel::Fixed(19)),
    ] {
        let text = SAMPLE.replace("[spool]", &format!("[spool]\nzstd_level = {value}"));
        assert_eq!(
            AgentConfig::parse(&text).unwrap().spool.zstd_level,
            expected
        );
    }
    for bad in ["0", "20", "-8", "\"fast\"", "3.5"] {
        let text = SAMPLE.replace("[spool]", &format!("[spool]\nzstd_level = {bad}"));
        let e = AgentConfig::parse(&text).unwrap_err().to_string();
        assert!(e.contains("zstd_level") || e.contains("auto"), "{bad}: {e}");
    }
}

#[test]
fn upload_windows_are_part_of_the_config() {
    let text = format!(
        "{SAMPLE}\n[upload]\nlimit = \"50 Mbit/s\"\nbandwidth = [{{ from = \"07:00\", to = \"18:00\", limit = \"2 Mbit/s\", days = \"weekdays\" }}]\n"
    );
    let c = AgentConfig::parse(&text).unwrap();
    assert_eq!(c.upload.default_limit, Rate::BytesPerSec(6_250_000));
    assert_eq!(c.upload.windows.len(), 1);
    assert!(c.upload.ever_limited());
    let overlapping = text.replace(
        "days = \"weekdays\" }]",
        "days = \"weekdays\" }, { from = \"12:00\", to = \"13:00\", limit = \"1 Mbit/s\" }]",
    );
    let e = AgentConfig::parse(&overlapping).unwrap_err().to_string();
    assert!(e.contains("overlaps"), "{e}");
}

#[test]
fn a_cap_must_let_a_batch_through_within_the_call_timeout() {
    // 1 MiB batches (the sample's) at 64 kbit/s: 131 s > 60 s (half of 2 min).
    let slow = format!("{SAMPLE}\n[upload]\nlimit = \"64 kbit/s\"\n");
    let e = AgentConfig::parse(&slow).unwrap_err().to_string();
    assert!(e.contains("too low for batches"), "{e}");
    // Smaller batches fit.
    let small = slow.replace("batch_raw_bytes = \"1MiB\"", "batch_raw_bytes = \"256KiB\"");
    AgentConfig::parse(&small).unwrap();
}
