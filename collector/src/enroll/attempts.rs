//! Counting failed enrollment attempts (`transmissor.enrollment_failures`).
//!
//! An attempt is charged *before* it is tried, by one statement that counts
//! only while the key is under its limit ([`charge`]), and refunded when it
//! succeeds ([`refund`]): concurrent attempts (on any replica) cannot slip
//! past the limit between a check and a count. Keys are `token:<id>` for a
//! token that exists (a junk token naming a municipality counts against
//! nothing of that municipality) and, for the coarse per-address limit,
//! `addr:<ip>`, IPv6 per /64 ([`source_of`]; the PROXY protocol's client
//! address when configured). A key
//! is one row however many attempts it sees; [`prune_attempts`] deletes rows
//! whose window has ended.

use std::time::Duration;

use sqlx::PgPool;

/// Charges one failure to `key` unless `limit` are already counted in the
/// current `window`. Returns whether it was charged (false: limit reached).
pub(super) async fn charge(
    pool: &PgPool,
    key: &str,
    limit: u32,
    window: Duration,
) -> Result<bool, sqlx::Error> {
    let counted: Option<i32> = sqlx::query_scalar(include_str!("queries/failure_charge.sql"))
        .bind(key)
        .bind(i32::try_from(limit).unwrap_or(i32::MAX))
        .bind(window.as_secs_f64())
        .fetch_optional(pool)
        .await?;
    Ok(counted.is_some())
}

/// Takes back the charge of an attempt that succeeded.
pub(super) async fn refund(pool: &PgPool, key: &str) {
    let r = sqlx::query(
        "UPDATE transmissor.enrollment_failures SET failures = greatest(failures - 1, 0) WHERE key = $1",
    )
    .bind(key)
    .execute(pool)
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, key, "cannot refund an enrollment attempt");
    }
}

/// Deletes the counters whose window ended more than `window` ago. Call it
/// periodically (the collector's 60-second housekeeping loop).
pub async fn prune_attempts(pool: &PgPool, window: Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM transmissor.enrollment_failures WHERE window_start < now() - make_interval(secs => $1)",
    )
    .bind(window.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}

/// The source an address's failures are counted against: the host of
/// `ip:port`, and for IPv6 its /64 (one host holds a whole /64, so counting
/// per address would let it rotate through 2^64 of them).
pub(super) fn source_of(addr: &str) -> String {
    match host_of(addr).parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        _ => host_of(addr).to_string(),
    }
}

/// The host part of `ip:port` (`[v6]:port` too).
pub(super) fn host_of(addr: &str) -> &str {
    addr.parse::<std::net::SocketAddr>()
        .ok()
        .map(|_| {
            let h = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
            h.trim_start_matches('[').trim_end_matches(']')
        })
        .unwrap_or(addr)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts() {
        assert_eq!(super::host_of("10.0.0.1:443"), "10.0.0.1");
        assert_eq!(super::host_of("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(super::host_of("unknown"), "unknown");
        assert_eq!(super::source_of("10.0.0.1:443"), "10.0.0.1");
        assert_eq!(
            super::source_of("[2001:db8:1:2:aaaa::1]:443"),
            super::source_of("[2001:db8:1:2:bbbb::9]:8443"),
        );
        assert_eq!(super::source_of("[2001:db8:1:2::1]:1"), "2001:db8:1:2::/64");
        assert_ne!(
            super::source_of("[2001:db8:1:2::1]:1"),
            super::source_of("[2001:db8:1:3::1]:1")
        );
        assert_eq!(super::source_of("[::ffff:10.0.0.1]:443"), "10.0.0.1");
    }
}
