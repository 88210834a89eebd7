//! The `Enrollment` service (the only one without a client certificate) and
//! the `AgentLifecycle` service (renewal, heartbeats).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_server::AgentLifecycle;
use transmissor_proto::pb::enrollment_server::Enrollment;

use crate::admission::{Admission, Slot};
use crate::enroll::Enroller;
use crate::error::CollectorError;
use crate::grpc::transmission::run_detached;
use crate::heartbeats::Heartbeats;
use crate::identity::{Authenticator, Peer};
use crate::metrics::Metrics;
use crate::plans::PublishedPlans;
use crate::run_requests::RunRequests;

fn not_configured() -> CollectorError {
    CollectorError::FailedPrecondition(
        "enrollment is not configured on this collector (no [ca] section)".into(),
    )
}

pub struct EnrollmentService {
    enroller: Option<Arc<Enroller>>,
    metrics: Arc<Metrics>,
}

impl EnrollmentService {
    pub fn new(enroller: Option<Arc<Enroller>>, metrics: Arc<Metrics>) -> Self {
        Self { enroller, metrics }
    }
}

#[tonic::async_trait]
impl Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let addr = Peer::of(&request).addr;
        let enroller = self.enroller.clone().ok_or_else(not_configured)?;
        let req = request.into_inner();
        run_detached(async move { enroller.enroll(&addr, req).await })
            .await
            .inspect_err(|s| self.metrics.refused("enroll", s))
            .map(Response::new)
    }
}

pub struct LifecycleService {
    auth: Authenticator,
    enroller: Option<Arc<Enroller>>,
    heartbeats: Arc<Heartbeats>,
    plans: Arc<PublishedPlans>,
    run_requests: Arc<RunRequests>,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
}

impl LifecycleService {
    pub fn new(
        auth: Authenticator,
        enroller: Option<Arc<Enroller>>,
        heartbeats: Arc<Heartbeats>,
        plans: Arc<PublishedPlans>,
        run_requests: Arc<RunRequests>,
        admission: Arc<Admission>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            admission,
            auth,
            enroller,
            heartbeats,
            plans,
            run_requests,
            metrics,
        }
    }
}

impl LifecycleService {
    /// The calling agent, admitted against its per-agent call slots before
    /// it is authenticated (in its own task: a disconnect mid-query never
    /// cuts a pooled connection's work short). The slot is held for the
    /// rest of the call.
    async fn caller<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(crate::identity::Caller, Slot), Status> {
        let peer = Peer::of(request);
        let slot = self.admit(&peer)?;
        let auth = self.auth.clone();
        let caller = run_detached(async move { auth.authenticate_peer(peer).await }).await?;
        Ok((caller, slot))
    }

    /// A call slot of the agent `peer`'s certificate names (no database).
    fn admit(&self, peer: &Peer) -> Result<Slot, Status> {
        let agent = crate::identity::agent_of(peer)?;
        Ok(self.admission.call(agent)?)
    }
}

#[tonic::async_trait]
impl AgentLifecycle for LifecycleService {
    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        let peer = Peer::of(&request);
        let addr = peer.addr.clone();
        let _slot = self
            .admit(&peer)
            .inspect_err(|s| self.metrics.refused("renew", s))?;
        let (auth, enroller) = (
            self.auth.clone(),
            self.enroller.clone().ok_or_else(not_configured)?,
        );
        let csr = request.into_inner().csr_pem;
        run_detached(async move {
            let (caller, presented) = auth.authenticate_renewal(peer).await?;
            enroller.renew(caller, presented, &addr, &csr).await
        })
        .await
        .inspect_err(|s| self.metrics.refused("renew", s))
        .map(Response::new)
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let (caller, _slot) = self.caller(&request).await?;
        let mut report = request.into_inner();
        // Texts are cut before anything logs them.
        self.heartbeats.bound(caller.agent_id, &mut report);
        let taken = std::mem::take(&mut report.run_requests_taken);
        if !taken.is_empty() {
            // In its own task: a disconnect never cuts the update short.
            let (requests, ibge, agent) = (
                self.run_requests.clone(),
                caller.ibge.to_string(),
                caller.agent_id,
            );
            let _ = tokio::spawn(async move { requests.taken(&ibge, agent, &taken).await }).await;
        }
        if !report.warning.is_empty() {
            tracing::warn!(agent = %caller.agent_id, ibge = %caller.ibge, warning = %transmissor_proto::terminal::printable(&report.warning), "agent reports a warning");
        }
        if !report.plan_refusal.is_empty() {
            tracing::warn!(agent = %caller.agent_id, ibge = %caller.ibge, plan_version = report.plan_version, refusal = %transmissor_proto::terminal::printable(&report.plan_refusal), "agent refused a plan");
        }
        self.heartbeats.record(caller.agent_id, report);
        self.metrics.heartbeats.inc();
        Ok(Response::new(pb::HeartbeatResponse {
            collector_time_unix_ms: chrono::Utc::now().timestamp_millis(),
            plan_version: self
                .plans
                .latest_for(caller.ibge.as_str())
                .map_or(0, |p| p.version),
            key_list_serial: self.plans.key_list_serial(),
            run_requests: self.run_requests.for_municipality(caller.ibge.as_str()),
        }))
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let (caller, _slot) = self.caller(&request).await?;
        tracing::info!(agent = %caller.agent_id, ibge = %caller.ibge, "agent doctor checked in");
        Ok(Response::new(pb::CheckResponse {
            agent_id: caller.agent_id.to_string(),
            ibge: caller.ibge.to_string(),
            collector_time_unix_ms: chrono::Utc::now().timestamp_millis(),
            plan_version: self
                .plans
                .latest_for(caller.ibge.as_str())
                .map_or(0, |p| p.version),
        }))
    }

    async fn fetch_plan(
        &self,
        request: Request<pb::FetchPlanRequest>,
    ) -> Result<Response<pb::FetchPlanResponse>, Status> {
        let (caller, _slot) = self.caller(&request).await?;
        let known = request.into_inner().key_list_serial;
        let plan = self.plans.latest_for(caller.ibge.as_str());
        tracing::info!(agent = %caller.agent_id, ibge = %caller.ibge, plan_version = plan.as_ref().map_or(0, |p| p.version), "plan fetched");
        self.metrics.plans_served.inc();
        Ok(Response::new(pb::FetchPlanResponse {
            plan: plan.map(|p| p.envelope.to_vec()).unwrap_or_default(),
            key_lists: self
                .plans
                .key_lists_after(known)
                .into_iter()
                .map(|k| k.to_vec())
                .collect(),
        }))
    }
}
