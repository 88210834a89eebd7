//! Fetching the published plan over mutual TLS, when a heartbeat's answer
//! says the published version (or the key-list serial) differs from what
//! the agent runs.

use tonic::Status;
use tonic::transport::Channel;

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;

/// What the collector advertises in a heartbeat answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertised {
    pub plan_version: u64,
    pub key_list_serial: u64,
}

impl From<&pb::HeartbeatResponse> for Advertised {
    fn from(r: &pb::HeartbeatResponse) -> Self {
        Self {
            plan_version: r.plan_version,
            key_list_serial: r.key_list_serial,
        }
    }
}

/// The signed plan and the key lists newer than `key_list_serial`.
pub async fn fetch(
    client: &AgentLifecycleClient<Channel>,
    key_list_serial: u64,
) -> Result<pb::FetchPlanResponse, Status> {
    Ok(client
        .clone()
        .fetch_plan(pb::FetchPlanRequest { key_list_serial })
        .await?
        .into_inner())
}
