//! The identity and collector checks: the agent's certificate is there,
//! valid and not near expiry; the collector answers over mutual TLS with a
//! certificate under the authority pinned at enrollment, and knows this
//! agent (`AgentLifecycle.Check`, which changes nothing); the clocks agree.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::AgentConfig;
use crate::diagnose;
use crate::identity::clock;
use crate::identity::credentials::Credentials;
use crate::identity::{self, IdentityError, IdentityPaths, Loaded};
use crate::pipeline::transport;

use super::finding::Finding;
use super::item::{Check, Item};

/// Beyond this the clocks disagree (certificates and schedules depend on
/// them).
pub const MAX_CLOCK_OFFSET_MS: i64 = 60_000;

/// A certificate with less than this share of its life left should have
/// been renewed (the agent renews at a random point of its last third).
const EXPIRING_FRACTION: f64 = 0.1;

/// The identity on disk, as far as it loads.
pub struct IdentityCheck {
    pub items: Vec<Item>,
    /// Loaded and currently valid: the collector can be asked.
    pub usable: Option<Loaded>,
}

/// The certificate check.
pub fn identity(cfg: &AgentConfig, now: DateTime<Utc>) -> IdentityCheck {
    let loaded = match identity::load(&IdentityPaths::from_config(cfg)) {
        Ok(l) => l,
        Err(IdentityError::NotEnrolled { path }) => {
            return IdentityCheck {
                items: vec![Item::new(Check::Certificate, Finding::NotEnrolled { path })],
                usable: None,
            };
        }
        Err(e) => {
            return IdentityCheck {
                items: vec![Item::new(
                    Check::Certificate,
                    Finding::IdentityUnreadable {
                        error: e.to_string(),
                    },
                )],
                usable: None,
            };
        }
    };
    let v = loaded.validity;
    let now_ms = now.timestamp_millis();
    let not_after = v.not_after();
    let finding = if now_ms >= v.not_after_ms {
        Finding::CertExpired { not_after }
    } else if now_ms < v.not_before_ms {
        Finding::CertNotYetValid {
            not_before: DateTime::from_timestamp_millis(v.not_before_ms).unwrap_or_default(),
        }
    } else {
        let days_left = (not_after - now).num_days();
        let left = (v.not_after_ms - now_ms) as f64 / v.lifetime_ms().max(1) as f64;
        if left < EXPIRING_FRACTION {
            Finding::CertExpiring {
                not_after,
                days_left,
            }
        } else {
            Finding::CertValid {
                not_after,
                days_left,
            }
        }
    };
    let usable = matches!(
        finding,
        Finding::CertValid { .. } | Finding::CertExpiring { .. }
    );
    IdentityCheck {
        items: vec![Item::new(Check::Certificate, finding)],
        usable: usable.then_some(loaded),
    }
}

/// What the collector said, for the plan check.
pub struct CollectorCheck {
    pub items: Vec<Item>,
    /// The newest plan published for the municipality, when it answered.
    pub published_plan: Option<u64>,
}

/// Asks the collector who it takes this agent for, and its time.
pub async fn collector(cfg: &AgentConfig, identity: Option<&Loaded>) -> CollectorCheck {
    let endpoint = cfg.collector.endpoint.clone();
    let Some(loaded) = identity else {
        return CollectorCheck {
            items: [Check::CollectorConnect, Check::CollectorClock]
                .into_iter()
                .map(|c| {
                    Item::new(
                        c,
                        Finding::NotChecked {
                            needs: Check::Certificate,
                        },
                    )
                })
                .collect(),
            published_plan: None,
        };
    };
    let not_checked = |f: Finding| CollectorCheck {
        items: vec![
            Item::new(Check::CollectorConnect, f),
            Item::new(
                Check::CollectorClock,
                Finding::NotChecked {
                    needs: Check::CollectorConnect,
                },
            ),
        ],
        published_plan: None,
    };
    let channel = Credentials::from_loaded(loaded)
        .map_err(|e| e.to_string())
        .and_then(|c| c.client_config().map_err(|e| e.to_string()))
        .and_then(|tls| {
            transport::connect_lazy(
                tls,
                &endpoint,
                cfg.collector.server_name.clone(),
                cfg.collector.connect_timeout,
                cfg.collector.request_timeout.min(Duration::from_secs(30)),
            )
            .map_err(|e| e.to_string())
        });
    let channel = match channel {
        Ok(c) => c,
        Err(error) => return not_checked(Finding::CollectorUnreachable { endpoint, error }),
    };
    let sent = clock::now_unix_ms();
    let answer = transport::lifecycle_client(channel)
        .check(transmissor_proto::pb::CheckRequest {})
        .await;
    let received = clock::now_unix_ms();
    let resp = match answer {
        Ok(r) => r.into_inner(),
        Err(status) => return not_checked(refusal(&endpoint, &status)),
    };
    let offset_ms = clock::offset_ms(sent, received, resp.collector_time_unix_ms);
    let clock = if offset_ms.abs() > MAX_CLOCK_OFFSET_MS {
        Finding::ClockSkewed { offset_ms }
    } else {
        Finding::ClockOk { offset_ms }
    };
    CollectorCheck {
        items: vec![
            Item::new(
                Check::CollectorConnect,
                Finding::CollectorOk {
                    endpoint,
                    ibge: resp.ibge,
                    agent_id: resp.agent_id,
                },
            ),
            Item::new(Check::CollectorClock, clock),
        ],
        published_plan: Some(resp.plan_version),
    }
}

/// A failed call sorted: the server is not the pinned collector; the
/// collector refused us; or nothing answered.
fn refusal(endpoint: &str, status: &tonic::Status) -> Finding {
    let (endpoint, error) = (endpoint.to_string(), diagnose::describe(status));
    match diagnose::failure(status) {
        diagnose::Failure::NotTrusted => Finding::CollectorNotTrusted { endpoint, error },
        diagnose::Failure::Refused => Finding::CollectorRefused { endpoint, error },
        diagnose::Failure::Unreachable => Finding::CollectorUnreachable { endpoint, error },
    }
}
