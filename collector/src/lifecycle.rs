//! The `Enrollment` service (the only one without a client certificate) and
//! the `AgentLifecycle` service (renewal, heartbeats).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_server::AgentLifecycle;
use transmissor_proto::pb::enrollment_server::Enrollment;

use crate::enroll::Enroller;
use crate::error::CollectorError;
use crate::heartbeats::Heartbeats;
use crate::identity::{Authenticator, Peer};
use crate::service::run_detached;

fn not_configured() -> CollectorError {
    CollectorError::FailedPrecondition(
        "enrollment is not configured on this collector (no [ca] section)".into(),
    )
}

pub struct EnrollmentService {
    enroller: Option<Arc<Enroller>>,
}

impl EnrollmentService {
    pub fn new(enroller: Option<Arc<Enroller>>) -> Self {
        Self { enroller }
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
            .map(Response::new)
    }
}

pub struct LifecycleService {
    auth: Authenticator,
    enroller: Option<Arc<Enroller>>,
    heartbeats: Arc<Heartbeats>,
}

impl LifecycleService {
    pub fn new(
        auth: Authenticator,
        enroller: Option<Arc<Enroller>>,
        heartbeats: Arc<Heartbeats>,
    ) -> Self {
        Self {
            auth,
            enroller,
            heartbeats,
        }
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
        .map(Response::new)
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let peer = Peer::of(&request);
        let auth = self.auth.clone();
        let caller = run_detached(async move { auth.authenticate_peer(peer).await }).await?;
        let report = request.into_inner();
        if !report.warning.is_empty() {
            tracing::warn!(agent = %caller.agent_id, ibge = %caller.ibge, warning = %transmissor_proto::terminal::printable(&report.warning), "agent reports a warning");
        }
        self.heartbeats.record(caller.agent_id, report);
        Ok(Response::new(pb::HeartbeatResponse {
            collector_time_unix_ms: chrono::Utc::now().timestamp_millis(),
        }))
    }
}
