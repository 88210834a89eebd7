//! Turning a failed call to the collector into a sentence municipal IT can
//! act on. The one place that reads TLS, socket and gRPC errors for meaning
//! (re-exported as `transport::explain`).

use tonic::{Code, Status};

/// The status, its cause chain, and what to do about it.
pub fn explain(status: &Status) -> String {
    let base = describe(status);
    match hint(status.code(), status.message(), &base) {
        Some(h) => format!("{base} — {h}"),
        None => base,
    }
}

/// The status and its cause chain, without advice.
pub fn describe(status: &Status) -> String {
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cur {
        let s = e.to_string();
        if chain.last() != Some(&s) {
            chain.push(s);
        }
        cur = e.source();
    }
    if chain.is_empty() {
        format!("{}: {}", status.code(), status.message())
    } else {
        format!(
            "{}: {} ({})",
            status.code(),
            status.message(),
            chain.join(": ")
        )
    }
}

/// Who ended a failed call to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// This agent's verifier refused the server's chain: not under the
    /// pinned CA, or not for this name (another server, or a proxy).
    NotTrusted,
    /// The collector refused this agent (a TLS alert, or the call).
    Refused,
    /// Nothing usable answered.
    Unreachable,
}

/// Sorts a failed call (what the doctor reports on).
pub fn failure(status: &Status) -> Failure {
    let all = describe(status).to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| all.contains(n));
    let alert = all.contains("received fatal alert");
    if !alert
        && has(&[
            "unknownissuer",
            "unknown issuer",
            "notvalidforname",
            "not valid for name",
            "badsignature",
            "is not the one this token was issued for",
        ])
    {
        Failure::NotTrusted
    } else if alert
        || matches!(
            status.code(),
            Code::PermissionDenied | Code::Unauthenticated
        )
    {
        Failure::Refused
    } else {
        Failure::Unreachable
    }
}

/// What to do, given the status code, its message and its cause chain.
pub fn hint(code: Code, message: &str, chain: &str) -> Option<&'static str> {
    let msg = message.to_lowercase();
    let all = format!("{msg}: {}", chain.to_lowercase());
    let has = |needles: &[&str]| needles.iter().any(|n| all.contains(n));
    // The collector speaks first: its refusals are precise.
    if code == Code::PermissionDenied && msg.contains("revoked") {
        return Some(
            "the central team revoked this agent: enroll it again with a new token (transmissor-agent enroll --collector ... --token ... --force)",
        );
    }
    if code == Code::Unauthenticated {
        return Some(
            "the collector received no valid certificate from this agent: check that it is enrolled (the identity files exist) or enroll it again",
        );
    }
    // Then the TLS handshake, as rustls reports it. "received fatal alert"
    // means the collector refused us; otherwise the agent refused the collector.
    let alert = all.contains("received fatal alert");
    Some(if has(&["token was issued for"]) {
        "the server at this address does not hold the collector's CA key: check --collector (right host and port?) and whether a proxy intercepts TLS; if it is right, ask the central team for a new token"
    } else if alert && has(&["certificateexpired", "certificate_expired"]) {
        "the collector says this agent's certificate has expired: check this machine's clock, then enroll the agent again with a new token (transmissor-agent enroll ...)"
    } else if alert && has(&["certificaterevoked", "certificate_revoked"]) {
        "the central team revoked this agent: enroll it again with a new token (transmissor-agent enroll ... --force)"
    } else if alert
        && has(&[
            "unknownca",
            "unknown_ca",
            "badcertificate",
            "bad_certificate",
        ])
    {
        "the collector does not accept this agent's certificate (issued by another CA, or the collector's CA changed): enroll the agent again with a new token"
    } else if alert && has(&["certificaterequired", "certificate_required"]) {
        "the collector asked for a client certificate and the agent had none: enroll the agent (transmissor-agent enroll ...)"
    } else if code == Code::DeadlineExceeded
        || has(&["timed out", "deadline has elapsed", "timeout expired"])
    {
        "the collector did not answer in time: check the network link and the firewall (outbound TCP to the collector's port)"
    } else if has(&["notvalidyet", "not valid yet", "not valid before"]) {
        "a certificate is not valid yet: this machine's clock is probably behind; fix its time synchronisation (NTP)"
    } else if has(&["expired"]) {
        "the collector's certificate looks expired: check this machine's clock (NTP); if the clock is right, tell the central team"
    } else if has(&["unknownissuer", "unknown issuer", "unknown_issuer"]) {
        "this agent does not trust the collector's certificate: a proxy may be intercepting TLS, or collector.endpoint points at another server (the trust bundle is in collector.ca_file / identity/trust.pem)"
    } else if has(&["notvalidforname", "not valid for name"]) {
        "the collector's certificate does not match the host name in collector.endpoint (set collector.server_name, or use the name the central team gave)"
    } else if has(&["connection refused"]) {
        "nothing listens at collector.endpoint: is the collector running, and are the host and port right?"
    } else if has(&[
        "dns error",
        "failed to lookup",
        "name or service not known",
        "no such host",
        "nodename nor servname",
        "temporary failure in name resolution",
    ]) {
        "the collector's host name does not resolve: check collector.endpoint and this machine's DNS"
    } else if has(&[
        "network is unreachable",
        "no route to host",
        "host is unreachable",
    ]) {
        "there is no network route to the collector: check this machine's network and gateway"
    } else if has(&[
        "connection reset",
        "broken pipe",
        "unexpected eof",
        "peer closed connection",
    ]) {
        "the connection was cut: a firewall or proxy may be interfering with TLS to the collector"
    } else if code == Code::PermissionDenied {
        "the collector refused this agent; the message says why"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn transport(cause: &str) -> Status {
        let mut s = Status::unavailable("error trying to connect");
        s.set_source(Arc::new(std::io::Error::other(cause.to_string())));
        s
    }

    #[test]
    fn common_failures_become_actionable_sentences() {
        for (status, needle) in [
            (
                transport("received fatal alert: CertificateExpired"),
                "enroll the agent again",
            ),
            (
                transport("invalid peer certificate: Expired"),
                "collector's certificate looks expired",
            ),
            (
                transport("received fatal alert: UnknownCA"),
                "does not accept this agent's certificate",
            ),
            (
                transport("invalid peer certificate: UnknownIssuer"),
                "does not trust the collector",
            ),
            (
                transport("invalid peer certificate: NotValidYet"),
                "clock is probably behind",
            ),
            (
                transport("tcp connect error: Connection refused (os error 111)"),
                "nothing listens",
            ),
            (
                transport(
                    "dns error: failed to lookup address information: Name or service not known",
                ),
                "does not resolve",
            ),
            (
                transport("tcp connect error: deadline has elapsed"),
                "did not answer in time",
            ),
            (
                transport(
                    "invalid peer certificate: Other(OtherError(PinMismatch { the collector at https://x:1 is not the one this token was issued for }))",
                ),
                "ask the central team for a new token",
            ),
            (
                Status::permission_denied("agent 0190 was revoked at 2025-01-01"),
                "revoked this agent",
            ),
            (
                Status::unauthenticated("no client certificate"),
                "no valid certificate",
            ),
            (
                Status::deadline_exceeded("Timeout expired"),
                "did not answer in time",
            ),
            (
                Status::cancelled("Timeout expired"),
                "did not answer in time",
            ),
        ] {
            let e = explain(&status);
            assert!(e.contains(needle), "{e}");
        }
        let plain = explain(&Status::invalid_argument("bad column"));
        assert_eq!(plain, format!("{}: bad column", Code::InvalidArgument));
        assert!(explain(&transport("boom")).contains("(boom)"));
    }
}
