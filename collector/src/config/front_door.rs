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
