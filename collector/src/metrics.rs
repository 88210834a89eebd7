//! Prometheus metrics of the collector, in one registry built once
//! ([`crate::app::App`]) and served at `/metrics` ([`crate::http`]).
//!
//! Naming follows Prometheus (`transmissor_` prefix, `_total` for counters,
//! `_bytes`, `_seconds`). Label values come from small, fixed sets (an
//! outcome, a refusal reason) or from job names that a published plan
//! defines; a municipality's IBGE code is never a label — per-municipality
//! state lives in the API.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReasonLabel {
    /// `grpc` or `http`.
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// `enroll` or `renew`.
    pub operation: &'static str,
    /// The gRPC status code's name (`permission_denied`, `resource_exhausted`, …).
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiryLabel {
    /// `expired`, `under_7d`, `under_30d`, `later`.
    pub expires: &'static str,
}

/// Every metric the collector keeps.
pub struct Metrics {
    registry: Registry,
    /// `Begin` accepted, by job.
    pub transmissions_begun: Family<JobLabel, Counter>,
    /// Transmissions ended: `committed`, `failed`, `aborted`.
    pub transmissions_finished: Family<OutcomeLabel, Counter>,
    /// Batches received: `loaded`, `duplicate`, `refused`.
    pub batches: Family<OutcomeLabel, Counter>,
    pub rows_received: Counter,
    pub raw_bytes_received: Counter,
    pub compressed_bytes_received: Counter,
    /// Time to load one batch into staging.
    pub batch_load_seconds: Histogram,
    /// Batches being loaded right now.
    pub batches_in_flight: Gauge,
    pub heartbeats: Counter,
    /// Agents whose last heartbeat is recent (set by the heartbeat flusher).
    pub agents_heartbeating: Gauge,
    /// TLS handshakes refused, by reason class.
    pub tls_failures: Family<ReasonLabel, Counter>,
    /// Connections closed before or right after their handshake, by
    /// listener and reason (a per-source budget, the first-byte deadline,
    /// the budget of connections without a certificate).
    pub connections_refused: Family<ListenerReasonLabel, Counter>,
    /// Enrollment and renewal refusals, by operation and status code.
    pub enrollment_failures: Family<RefusalLabel, Counter>,
    /// Plans served to agents (`FetchPlan`).
    pub plans_served: Counter,
    /// Municipalities by overall health state (set by each evaluation).
    pub municipalities: Family<StateLabel, Gauge>,
    /// Time of one health evaluation pass.
    pub health_evaluation_seconds: Histogram,
    /// Changes of state stored (all axes).
    pub health_transitions: Counter,
    /// Active agents by how soon their certificate expires.
    pub agent_certificates: Family<ExpiryLabel, Gauge>,
    /// Spool bytes in use, summed over the active agents' last heartbeats.
    pub agents_spool_used_bytes: Gauge,
    /// Alert messages delivered, sent as digests, failed after every
    /// retry, dropped (queue full).
    pub alerts: Family<OutcomeLabel, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("transmissor");
        let m = Self {
            transmissions_begun: Family::default(),
            transmissions_finished: Family::default(),
            batches: Family::default(),
            rows_received: Counter::default(),
            raw_bytes_received: Counter::default(),
            compressed_bytes_received: Counter::default(),
            // 1 ms to about 33 s.
            batch_load_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            batches_in_flight: Gauge::default(),
            heartbeats: Counter::default(),
            agents_heartbeating: Gauge::default(),
            tls_failures: Family::default(),
            connections_refused: Family::default(),
            enrollment_failures: Family::default(),
            plans_served: Counter::default(),
            municipalities: Family::default(),
            // 10 ms to about 80 s.
            health_evaluation_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            health_transitions: Counter::default(),
            agent_certificates: Family::default(),
            agents_spool_used_bytes: Gauge::default(),
            alerts: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "transmissions_begun",
            "Transmissions begun (Begin accepted), by job",
            m.transmissions_begun.clone(),
        );
        registry.register(
            "transmissions_finished",
            "Transmissions ended, by outcome (committed, failed, aborted)",
            m.transmissions_finished.clone(),
        );
        registry.register(
            "batches",
            "Batches received, by outcome (loaded, duplicate, refused)",
            m.batches.clone(),
        );
        registry.register(
            "received_rows",
            "Rows received in loaded batches",
            m.rows_received.clone(),
        );
        registry.register(
            "received_raw_bytes",
            "Uncompressed bytes received in loaded batches",
            m.raw_bytes_received.clone(),
        );
        registry.register(
            "received_compressed_bytes",
            "Compressed bytes received in loaded batches",
            m.compressed_bytes_received.clone(),
        );
        registry.register(
            "batch_load_seconds",
            "Time to decompress, check and load one batch into staging",
            m.batch_load_seconds.clone(),
        );
        registry.register(
            "batches_in_flight",
            "Batches being loaded now",
            m.batches_in_flight.clone(),
        );
        registry.register("heartbeats", "Heartbeats received", m.heartbeats.clone());
        registry.register(
            "agents_heartbeating",
            "Agents whose last heartbeat is less than 10 minutes old",
            m.agents_heartbeating.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes refused, by reason",
            m.tls_failures.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at admission, by listener and reason",
            m.connections_refused.clone(),
        );
        registry.register(
            "enrollment_failures",
            "Enrollments and renewals refused, by operation and gRPC status code",
            m.enrollment_failures.clone(),
        );
        registry.register(
            "plans_served",
            "Signed plans served to agents",
            m.plans_served.clone(),
        );
        registry.register(
            "municipalities",
            "Municipalities by overall health state",
            m.municipalities.clone(),
        );
        registry.register(
            "health_evaluation_seconds",
            "Time of one pass deriving every municipality's health",
            m.health_evaluation_seconds.clone(),
        );
        registry.register(
            "health_transitions",
            "Changes of health state stored (connectivity, data, health, overall)",
            m.health_transitions.clone(),
        );
        registry.register(
            "agent_certificates",
            "Active agents by when their certificate expires",
            m.agent_certificates.clone(),
        );
        registry.register(
            "agents_spool_used_bytes",
            "Spool bytes in use, summed over the active agents' last heartbeats",
            m.agents_spool_used_bytes.clone(),
        );
        registry.register(
            "alert_messages",
            "Alert messages by outcome (sent, digest, failed, dropped)",
            m.alerts.clone(),
        );
        Self { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Metrics {
    /// Counts a refused enrollment or renewal.
    pub fn refused(&self, operation: &'static str, status: &tonic::Status) {
        self.enrollment_failures
            .get_or_create(&RefusalLabel {
                operation,
                code: code_name(status.code()),
            })
            .inc();
    }
}

/// A status code's name in `snake_case` (a fixed set: a metric label).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "ok",
        C::Cancelled => "cancelled",
        C::Unknown => "unknown",
        C::InvalidArgument => "invalid_argument",
        C::DeadlineExceeded => "deadline_exceeded",
        C::NotFound => "not_found",
        C::AlreadyExists => "already_exists",
        C::PermissionDenied => "permission_denied",
        C::ResourceExhausted => "resource_exhausted",
        C::FailedPrecondition => "failed_precondition",
        C::Aborted => "aborted",
        C::OutOfRange => "out_of_range",
        C::Unimplemented => "unimplemented",
        C::Internal => "internal",
        C::Unavailable => "unavailable",
        C::DataLoss => "data_loss",
        C::Unauthenticated => "unauthenticated",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions_and_move() {
        let m = Metrics::new();
        m.transmissions_begun
            .get_or_create(&JobLabel {
                job: "visitas".into(),
            })
            .inc();
        m.raw_bytes_received.inc_by(1000);
        m.batch_load_seconds.observe(0.02);
        m.refused(
            "enroll",
            &tonic::Status::permission_denied("token already used"),
        );
        let text = m.render();
        for line in [
            "transmissor_enrollment_failures_total{operation=\"enroll\",code=\"permission_denied\"} 1",
            "transmissor_transmissions_begun_total{job=\"visitas\"} 1",
            "transmissor_received_raw_bytes_total 1000",
            "transmissor_batch_load_seconds_count 1",
            "# TYPE transmissor_batches_in_flight gauge",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
