//! Defaults and checks of the front doors' admission limits (`[server]`'s
//! and `[http]`'s per-source budgets, first-byte deadlines and idle
//! timeouts); the reasoning behind the defaults is in
//! [`crate::tls::budget`].

use std::time::Duration;

use super::{HttpConfig, ServerConfig};

pub(super) fn default_per_source_connections() -> usize {
    64
}
pub(super) fn default_per_source_handshakes() -> usize {
    16
}
/// Covers a lost ClientHello segment resent twice (Linux: 1 s, then 2 s).
pub(super) fn default_first_byte() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_without_certificate() -> usize {
    64
}
pub(super) fn default_without_certificate_per_source() -> usize {
    8
}
/// Below the gRPC server's 30 s keep-alive ping, which would count as
/// traffic.
pub(super) fn default_without_certificate_idle() -> Duration {
    Duration::from_secs(20)
}
pub(super) fn default_http_idle() -> Duration {
    Duration::from_secs(120)
}
pub(super) fn default_http_age() -> Duration {
    Duration::from_secs(3600)
}
pub(super) fn default_body_read() -> Duration {
    Duration::from_secs(30)
}

/// Every count at least 1, every duration above zero.
pub(super) fn validate(server: &ServerConfig, http: &HttpConfig) -> Result<(), String> {
    let counts = [
        (
            "server.max_connections_per_source",
            server.max_connections_per_source,
        ),
        (
            "server.max_handshakes_per_source",
            server.max_handshakes_per_source,
        ),
        (
            "server.max_connections_without_certificate",
            server.max_connections_without_certificate,
        ),
        (
            "server.max_connections_without_certificate_per_source",
            server.max_connections_without_certificate_per_source,
        ),
        (
            "http.max_connections_per_source",
            http.max_connections_per_source,
        ),
    ];
    if let Some((name, _)) = counts.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{name} must be at least 1"));
    }
    let durations = [
        ("server.first_byte_timeout", server.first_byte_timeout),
        (
            "server.idle_timeout_without_certificate",
            server.idle_timeout_without_certificate,
        ),
        ("http.first_byte_timeout", http.first_byte_timeout),
        ("http.idle_timeout", http.idle_timeout),
        ("http.max_connection_age", http.max_connection_age),
        ("http.body_read_timeout", http.body_read_timeout),
    ];
    if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
        return Err(format!("{name} must be above zero"));
    }
    if server.first_byte_timeout > server.handshake_timeout {
        return Err("server.first_byte_timeout must be at most server.handshake_timeout".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::CollectorConfig;
    use std::time::Duration;

    const BASE: &str = r#"
version = 1
[server]
listen = "127.0.0.1:7443"
SERVER
[tls]
ca_file = "ca.pem"
cert_file = "server.pem"
key_file = "server.key"
[database]
url = "postgres://collector@127.0.0.1:5432/analytic"
[plans]
allow_local_jobs = true
[http]
HTTP
"#;

    fn parse(server: &str, http: &str) -> Result<CollectorConfig, String> {
        CollectorConfig::parse(&BASE.replace("SERVER", server).replace("HTTP", http))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_allow_a_shared_egress_and_close_silence_quickly() {
        let c = parse("", "").unwrap();
        assert_eq!(c.server.max_connections_per_source, 64);
        assert_eq!(c.server.max_handshakes_per_source, 16);
        assert_eq!(c.server.first_byte_timeout, Duration::from_secs(5));
        assert_eq!(c.server.max_connections_without_certificate, 64);
        assert!(c.server.per_source_exempt.is_empty());
        assert_eq!(c.http.max_connections_per_source, 64);
        assert_eq!(c.http.body_read_timeout, Duration::from_secs(30));
        let c = parse(r#"per_source_exempt = ["10.0.0.0/8"]"#, "").unwrap();
        assert_eq!(c.server.per_source_exempt.len(), 1);
    }

    #[test]
    fn zero_limits_and_deadlines_are_refused() {
        let e = parse("max_connections_per_source = 0", "").unwrap_err();
        assert!(e.contains("server.max_connections_per_source"), "{e}");
        let e = parse("", "idle_timeout = \"0s\"").unwrap_err();
        assert!(e.contains("http.idle_timeout"), "{e}");
        let e = parse("first_byte_timeout = \"20s\"", "").unwrap_err();
        assert!(e.contains("at most server.handshake_timeout"), "{e}");
        let e = parse("max_handshake_per_source = 3", "").unwrap_err();
        assert!(e.contains("max_handshake_per_source"), "{e}");
    }
}
