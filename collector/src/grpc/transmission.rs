//! The `transmissor.v1.Transmission` gRPC service: authenticate, translate,
//! delegate to [`crate::load`]. Errors become statuses in [`crate::error`].
//!
//! Every handler's work runs in its own task ([`detached`]): when a caller
//! disconnects mid-call (an agent killed during `PutBatch`), tonic drops the
//! handler's future, and a database transaction or `COPY` cut off half-way
//! would poison its pooled connection. Detached, the work always reaches its
//! commit or rollback; only the answer is lost, and the agent's retry finds
//! the batch already held.

use std::future::Future;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use transmissor_proto::pb;
use transmissor_proto::pb::transmission_server::Transmission;

use crate::admission::Admission;
use crate::error::CollectorError;
use crate::identity::{Authenticator, Peer};
use crate::load::batch::IncomingBatch;
use crate::load::upsert::{self, UpsertSpec};
use crate::load::{BatchOutcome, BeginSpec, Loader, NeverBegun, UpsertCommit, schema};
use crate::metrics::{JobLabel, Metrics, OutcomeLabel};
use crate::plans::PublishedPlans;

#[derive(Clone)]
pub struct TransmissionService {
    auth: Authenticator,
    loader: Loader,
    admission: Arc<Admission>,
    plans: Arc<PublishedPlans>,
    metrics: Arc<Metrics>,
}

/// What a call holds while it runs, beyond its per-agent call slot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holds {
    Control,
    /// A batch: decompressed data, so also a per-agent batch slot.
    Data,
}

impl TransmissionService {
    pub fn new(
        auth: Authenticator,
        loader: Loader,
        admission: Arc<Admission>,
        plans: Arc<PublishedPlans>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            auth,
            loader,
            admission,
            plans,
            metrics,
        }
    }

    /// Admits the call against the slots of the agent its certificate
    /// names (no database: one agent's flood is refused before it can
    /// queue everyone's authentication behind its own), authenticates the
    /// peer, and runs `work` to completion in its own task, whatever
    /// happens to the call.
    async fn detached<T, F, Fut>(&self, peer: Peer, holds: Holds, work: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(Loader, crate::identity::Caller) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, CollectorError>> + Send + 'static,
    {
        let (auth, loader, admission) = (
            self.auth.clone(),
            self.loader.clone(),
            self.admission.clone(),
        );
        run_detached(async move {
            let agent = crate::identity::agent_of(&peer)?;
            let _call = admission.call(agent)?;
            let _batch = match holds {
                Holds::Data => Some(admission.batch(agent)?),
                Holds::Control => None,
            };
            let caller = auth.authenticate_peer(peer).await?;
            work(loader, caller).await
        })
        .await
    }
}

/// Runs `work` to completion in its own task, whatever happens to the call.
pub(crate) async fn run_detached<T, Fut>(work: Fut) -> Result<T, Status>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, CollectorError>> + Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(r) => r.map_err(Status::from),
        Err(e) => Err(CollectorError::Internal(format!("handler task: {e}")).into()),
    }
}

fn parse_run_id(s: &str) -> Result<Uuid, CollectorError> {
    Uuid::parse_str(s).map_err(|_| {
        let shown: String = s.chars().take(40).collect();
        CollectorError::InvalidArgument(format!("run_id {shown:?} is not a UUID"))
    })
}

#[tonic::async_trait]
impl Transmission for TransmissionService {
    async fn begin(
        &self,
        request: Request<pb::BeginRequest>,
    ) -> Result<Response<pb::BeginResponse>, Status> {
        let peer = Peer::of(&request);
        let r = request.into_inner();
        let plans = self.plans.clone();
        let job = r.job.clone();
        let out = self
            .detached(peer, Holds::Control, move |loader, caller| async move {
                crate::admission::check_len("claimed_ibge", &r.claimed_ibge, 7)?;
                if !r.claimed_ibge.is_empty() && r.claimed_ibge != caller.ibge.as_str() {
                    tracing::warn!(ibge = %caller.ibge, agent = %caller.agent_id, claimed = %r.claimed_ibge, "payload claims another municipality");
                    return Err(CollectorError::PermissionDenied(format!(
                        "the request claims municipality {} but the client certificate is for {}; the certificate decides",
                        r.claimed_ibge, caller.ibge
                    )));
                }
                let mode = schema::mode_str(r.mode)?;
                // Targets are defined by published plans: an agent cannot
                // create a table, or claim a target, its plan does not name.
                let columns: Vec<schema::ColumnSpec> =
                    r.columns.iter().map(schema::ColumnSpec::from).collect();
                let upsert = match (&r.upsert, mode) {
                    (Some(u), "upsert") => Some(UpsertSpec::from_pb(u, &columns)?),
                    _ => None,
                };
                plans
                    .authorize_begin(
                        caller.ibge.as_str(),
                        r.plan,
                        &r.job,
                        &r.target,
                        mode,
                        upsert.as_ref(),
                    )
                    .await?;
                let spec = BeginSpec {
                    run_id: parse_run_id(&r.run_id)?,
                    mode,
                    columns,
                    upsert,
                    job: r.job,
                    target: r.target,
                    plan_version: r.plan_version,
                    snapshot: r.snapshot,
                    source_server_version: r.source_server_version,
                    agent_version: r.agent_version,
                    copy_format: schema::copy_format_str(r.copy_format)?,
                };
                loader.begin(caller, spec).await
            })
            .await?;
        // The job was authorized by a published plan: a bounded label.
        self.metrics
            .transmissions_begun
            .get_or_create(&JobLabel { job })
            .inc();
        Ok(Response::new(pb::BeginResponse {
            transmission_id: out.transmission_id,
            state: out.state.to_pb() as i32,
            held_seqs: out.held_seqs,
            committed_watermark_us: out.committed.watermark.map(upsert::micros),
            reconciled_at_us: out.committed.reconciled_at.map(upsert::micros),
        }))
    }

    async fn put_batch(
        &self,
        request: Request<pb::PutBatchRequest>,
    ) -> Result<Response<pb::PutBatchResponse>, Status> {
        let peer = Peer::of(&request);
        let r = request.into_inner();
        let (rows, raw, compressed) = (r.rows, r.raw_len, r.data.len() as u64);
        let batch = IncomingBatch {
            transmission_id: r.transmission_id,
            seq: r.seq,
            rows: r.rows,
            raw_len: r.raw_len,
            crc32c: r.crc32c,
            data: r.data,
        };
        let m = &self.metrics;
        m.batches_in_flight.inc();
        let started = std::time::Instant::now();
        let out = self
            .detached(peer, Holds::Data, move |loader, caller| async move {
                loader.put_batch(caller, batch).await
            })
            .await;
        m.batches_in_flight.dec();
        let outcome = match &out {
            Ok(BatchOutcome::Loaded) => {
                m.batch_load_seconds
                    .observe(started.elapsed().as_secs_f64());
                m.rows_received.inc_by(rows);
                m.raw_bytes_received.inc_by(raw);
                m.compressed_bytes_received.inc_by(compressed);
                "loaded"
            }
            Ok(BatchOutcome::Duplicate) => "duplicate",
            Err(_) => "refused",
        };
        m.batches.get_or_create(&OutcomeLabel { outcome }).inc();
        let out = out?;
        Ok(Response::new(pb::PutBatchResponse {
            duplicate: out == BatchOutcome::Duplicate,
        }))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let peer = Peer::of(&request);
        let r = request.into_inner();
        let out = self
            .detached(peer, Holds::Control, move |loader, caller| async move {
                let merge = UpsertCommit {
                    full: r.full,
                    since: r
                        .since_us
                        .map(|us| {
                            chrono::DateTime::from_timestamp_micros(us).ok_or_else(|| {
                                CollectorError::InvalidArgument(format!(
                                    "since_us {us} is not a valid time"
                                ))
                            })
                        })
                        .transpose()?,
                };
                loader
                    .commit(
                        caller,
                        r.transmission_id,
                        r.total_batches,
                        r.total_rows,
                        &r.digest,
                        merge,
                    )
                    .await
            })
            .await?;
        // A commit retried after a lost answer is counted again.
        let outcome = match out.state {
            crate::load::TxState::Committed => "committed",
            crate::load::TxState::Failed => "failed",
            _ => "other",
        };
        self.metrics
            .transmissions_finished
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        Ok(Response::new(pb::CommitResponse {
            state: out.state.to_pb() as i32,
            rows: out.rows,
            updated: out.merged.updated,
            deleted: out.merged.deleted,
            superseded: out.superseded,
        }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let peer = Peer::of(&request);
        let id = request.into_inner().transmission_id;
        let out = self
            .detached(peer, Holds::Control, move |loader, caller| async move {
                loader.status(caller, id).await
            })
            .await?;
        Ok(Response::new(pb::StatusResponse {
            transmission_id: id,
            state: out.state.to_pb() as i32,
            held_seqs: out.held_seqs,
            error: out.error.unwrap_or_default(),
        }))
    }

    async fn abort(
        &self,
        request: Request<pb::AbortRequest>,
    ) -> Result<Response<pb::AbortResponse>, Status> {
        let peer = Peer::of(&request);
        let r = request.into_inner();
        let r_failed = r.failed;
        let state = self
            .detached(peer, Holds::Control, move |loader, caller| async move {
                let id = (r.transmission_id > 0).then_some(r.transmission_id);
                let run_job = match id {
                    Some(_) => None,
                    None => Some(NeverBegun {
                        run_id: parse_run_id(&r.run_id)?,
                        job: r.job,
                        mode: schema::mode_str(r.mode)?,
                        target: r.target,
                        plan_version: r.plan_version,
                    }),
                };
                loader.abort(caller, id, run_job, r.failed, &r.reason).await
            })
            .await?;
        self.metrics
            .transmissions_finished
            .get_or_create(&OutcomeLabel {
                outcome: if r_failed { "failed" } else { "aborted" },
            })
            .inc();
        Ok(Response::new(pb::AbortResponse {
            state: state.to_pb() as i32,
        }))
    }
}
