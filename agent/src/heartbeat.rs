//! Heartbeats: the long-running agent tells the collector, at a jittered
//! interval, that it is alive and how it is doing — version, OS, certificate
//! expiry, clock offset, spool usage, the last outcome of each job and any
//! warning. Each response's time also refreshes the clock offset
//! ([`crate::identity::clock`]) the renewal schedule relies on, and its run
//! requests go to the daemon ([`crate::run_requests`]).
//! What it reports is kept in [`crate::status::AgentStatus`].

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;

use crate::identity::clock::{self, ClockSync};
use crate::identity::credentials::Credentials;
use crate::pipeline::spool::Spool;
use crate::pipeline::transport::explain;
use crate::plan::PlanKeeper;
use crate::plan::fetch::{self, Advertised};
use crate::run_requests::RunRequests;
use crate::status::AgentStatus;

/// Heartbeat waits are drawn within ±20% of the configured interval.
pub const JITTER: f64 = 0.2;

/// `interval` scaled by `1 + JITTER·r`, for `r` in `[-1, 1]`.
pub fn jittered(interval: Duration, r: f64) -> Duration {
    interval.mul_f64(1.0 + JITTER * r.clamp(-1.0, 1.0))
}

/// The host OS as reported: `std::env::consts::{OS, ARCH}`.
pub fn os() -> String {
    format!("{} {}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Sends heartbeats.
#[derive(Clone)]
pub struct Heartbeat {
    client: AgentLifecycleClient<Channel>,
    credentials: Arc<Credentials>,
    clock: Arc<ClockSync>,
    status: Arc<AgentStatus>,
    spool: Spool,
    /// Central mode: plans are fetched when an answer announces another.
    plans: Option<Arc<PlanKeeper>>,
    /// Operators' run requests the answers carry.
    run_requests: Arc<RunRequests>,
    /// Where the doctor keeps its last summary (the state directory).
    doctor_dir: Option<std::path::PathBuf>,
}

impl Heartbeat {
    pub fn new(
        client: AgentLifecycleClient<Channel>,
        credentials: Arc<Credentials>,
        clock: Arc<ClockSync>,
        status: Arc<AgentStatus>,
        spool: Spool,
        plans: Option<Arc<PlanKeeper>>,
        run_requests: Arc<RunRequests>,
    ) -> Self {
        Self {
            client,
            credentials,
            clock,
            status,
            spool,
            plans,
            run_requests,
            doctor_dir: None,
        }
    }

    /// Reports the last doctor summary kept in `state_dir`.
    pub fn with_doctor_summaries(mut self, state_dir: &std::path::Path) -> Self {
        self.doctor_dir = Some(state_dir.to_path_buf());
        self
    }

    /// The heartbeat as it would be sent now.
    pub fn request(&self) -> pb::HeartbeatRequest {
        let warning = [self.status.certificate_warning(), self.clock.warning()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        let plan = self
            .plans
            .as_ref()
            .map(|k| k.report(plan_now(&self.clock)))
            .unwrap_or_default();
        pb::HeartbeatRequest {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            os: os(),
            certificate_not_after_unix_ms: self.credentials.validity().not_after_ms,
            agent_time_unix_ms: clock::now_unix_ms(),
            clock_offset_ms: self.clock.offset_ms(),
            spool_used_bytes: self.spool.used(),
            spool_limit_bytes: self.spool.limit(),
            last_runs: self.status.last_runs(),
            warning,
            pec_version: self.status.pec_version().unwrap_or_default(),
            job_source: if self.plans.is_some() {
                pb::JobSource::Plan
            } else {
                pb::JobSource::Local
            } as i32,
            plan_version: plan.version,
            plan_expired: plan.expired,
            plan_refusal: plan.refusal.unwrap_or_default(),
            next_runs: self.status.next_runs(),
            key_list_serial: plan.key_list_serial,
            run_requests_taken: self.run_requests.to_report(),
            doctor: self
                .doctor_dir
                .as_deref()
                .and_then(crate::doctor::report::load_summary),
        }
    }

    /// Sends one heartbeat; returns the measured clock offset. In central
    /// mode, an answer announcing another plan (or newer plan keys) is
    /// followed by a fetch, and the plan is verified and accepted or refused
    /// before this returns; the refusal goes out with the next heartbeat.
    pub async fn beat(&self) -> Result<i64, Status> {
        let req = self.request();
        let sent = req.agent_time_unix_ms;
        let resp = self.client.clone().heartbeat(req).await?.into_inner();
        let offset = self
            .clock
            .record(sent, clock::now_unix_ms(), resp.collector_time_unix_ms);
        // The plan first: a request in the same answer (the first one
        // after an install, say) then runs the plan's jobs, not none.
        if let Some(keeper) = &self.plans {
            let ad = Advertised::from(&resp);
            if keeper.should_fetch(ad) {
                self.sync_plan(keeper, ad).await;
            }
        }
        self.run_requests.receive(&resp.run_requests);
        Ok(offset)
    }

    /// Fetches what the collector publishes and offers it to the keeper.
    async fn sync_plan(&self, keeper: &PlanKeeper, ad: Advertised) {
        match fetch::fetch(&self.client, keeper.key_list_serial()).await {
            Ok(r) => {
                let now = plan_now(&self.clock);
                if let Err(e) = keeper.offer(&r.plan, &r.key_lists, ad.plan_version, now) {
                    tracing::error!(error = %e, "cannot store the plan state");
                }
            }
            Err(s) => {
                tracing::warn!(error = %explain(&s), "plan not fetched; retrying at the next heartbeat")
            }
        }
    }

    /// Beats now, then every `interval` ±20%, until `cancel`.
    pub async fn run(self, interval: Duration, cancel: CancellationToken) {
        let mut failing = false;
        loop {
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                r = self.beat() => r,
            };
            match result {
                Ok(offset) => {
                    if failing {
                        tracing::info!("heartbeats reach the collector again");
                    }
                    failing = false;
                    tracing::debug!(clock_offset_ms = offset, "heartbeat sent");
                    // Run requests arrived: report them taken now.
                    if self.run_requests.take_report_due() {
                        continue;
                    }
                }
                Err(s) if !failing => {
                    failing = true;
                    tracing::warn!(error = %explain(&s), "heartbeat failed; retrying at the next interval");
                }
                Err(s) => tracing::debug!(error = %explain(&s), "heartbeat failed again"),
            }
            let wait = jittered(interval, rand::rng().random_range(-1.0..=1.0));
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The time plans are judged at (expiry, the heartbeat's `plan_expired`).
/// Deliberately the agent's own clock, not `clock.collector_now()`: the
/// collector's time reaches the agent unsigned in every answer, and a
/// collector that lies about it must not make an expired plan current. The
/// offset to the collector is only measured and reported (a warning past a
/// minute), never applied here.
fn plan_now(_clock: &ClockSync) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_judged_on_the_agent_clock_not_the_collectors() {
        use transmissor_plan::{Kind, PublicKey, SigningKey, sign};
        let key = SigningKey::from_bytes(&[1; 32]);
        let now = chrono::Utc::now();
        let day = chrono::Duration::days(1);
        // The collector claims to be 30 days behind the agent.
        let clock = ClockSync::new(0);
        let local = clock::now_unix_ms();
        clock.record(local, local, (now - day * 30).timestamp_millis());
        assert!(clock.collector_now() < now - day * 29);
        // A plan that expired yesterday by the agent's clock (still valid
        // for 29 days by the collector's).
        let plan = format!(
            "format = 1\nversion = 1\nissued_at = {}\nexpires_at = {}\nscope = \"all\"\n",
            (now - day * 60).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            (now - day).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        let envelope = sign(Kind::Plan, plan.as_bytes(), &key);
        let dir = tempfile::tempdir().unwrap();
        let keeper = PlanKeeper::open(
            [PublicKey::from(&key)].into_iter().collect(),
            None,
            "3550308",
            crate::plan::store::PlanStore::open(dir.path()).unwrap(),
        )
        .unwrap();
        let outcome = keeper.offer(&envelope, &[], 1, plan_now(&clock)).unwrap();
        assert!(
            matches!(
                outcome,
                crate::plan::OfferOutcome::Refused(crate::plan::verify::Refusal::Expired { .. })
            ),
            "{outcome:?}"
        );
        assert!(keeper.running().is_none());
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let i = Duration::from_secs(60);
        assert_eq!(jittered(i, 0.0), i);
        assert_eq!(jittered(i, -1.0), Duration::from_secs(48));
        assert_eq!(jittered(i, 1.0), Duration::from_secs(72));
        assert_eq!(jittered(i, 7.0), Duration::from_secs(72));
    }

    #[test]
    fn os_names_platform_and_arch() {
        let o = os();
        assert!(o.starts_with(std::env::consts::OS) && o.ends_with(std::env::consts::ARCH));
    }
}
