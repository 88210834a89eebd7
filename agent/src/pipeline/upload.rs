//! Upload of one job's spooled batches: `Begin` (idempotent by run and job),
//! `PutBatch` with several in flight while extraction goes on, `Commit`, and
//! only then deletion of the job's spool directory. Every call is retried
//! with full-jitter backoff while the error is retriable; resumption after
//! either side restarts uses what the collector says it already holds.

use std::collections::HashSet;
use std::future::Future;
use std::time::Instant;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

use transmissor_proto::pb;
use transmissor_proto::pb::transmission_client::TransmissionClient;

use crate::config::{Mode, RetryConfig};
use crate::pipeline::extract::{Phase, Progress};
use crate::pipeline::incremental::Committed;
use crate::pipeline::level::link;
use crate::pipeline::retry::{Backoff, is_retriable};
use crate::pipeline::spool::{CopyFormat, JobDir, JobMeta, SpoolError};
use crate::pipeline::transport::explain;

/// How a job ended, as far as this agent run is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// The collector committed the transmission; the spool is cleaned.
    Committed { transmission_id: i64, rows: u64 },
    /// Extraction failed; the collector recorded it as failed.
    Failed { reason: String },
    /// The collector refused the transmission (schema change, ...).
    Refused { reason: String },
    /// Not finished (collector unreachable, shutdown); the spool keeps the
    /// data and the next run sends it.
    Pending { reason: String },
    /// An extraction interrupted by the agent's own stop, found at start-up:
    /// its transmission was aborted and the job is extracted again.
    Abandoned { reason: String },
    /// An upsert transmission not loaded because one of the job from a
    /// newer snapshot was committed first (which holds all its changes).
    Superseded { transmission_id: i64 },
    /// Not run here: the job's PEC-version range excludes this database.
    Skipped { reason: String },
}

#[derive(Debug)]
enum CallError {
    Permanent(Status),
    GaveUp(String),
    Cancelled,
}

impl CallError {
    fn into_outcome(self, what: &str) -> Result<JobOutcome, Status> {
        match self {
            CallError::Permanent(s) => Err(s),
            CallError::GaveUp(why) => Ok(JobOutcome::Pending {
                reason: format!("{what}: collector unreachable ({why}); the spool keeps the data"),
            }),
            CallError::Cancelled => Ok(JobOutcome::Pending {
                reason: "agent shutting down; the spool keeps the data".into(),
            }),
        }
    }
}

#[derive(Clone)]
pub struct Uploader {
    client: TransmissionClient<Channel>,
    retry: RetryConfig,
    in_flight: usize,
    claimed_ibge: String,
    cancel: CancellationToken,
}

fn pb_mode(m: &Mode) -> pb::Mode {
    match m {
        Mode::Snapshot => pb::Mode::Snapshot,
        Mode::Append => pb::Mode::Append,
        Mode::Upsert => pb::Mode::Upsert,
    }
}

fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(us)
}

impl Uploader {
    pub fn new(
        client: TransmissionClient<Channel>,
        retry: RetryConfig,
        in_flight: usize,
        claimed_ibge: Option<String>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            client,
            retry,
            in_flight,
            claimed_ibge: claimed_ibge.unwrap_or_default(),
            cancel,
        }
    }

    /// Calls `f` until it succeeds, fails permanently, the retry budget runs
    /// out, or the agent shuts down.
    async fn call<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, CallError>
    where
        F: FnMut(TransmissionClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let start = Instant::now();
        let mut backoff = Backoff::new(self.retry.initial, self.retry.max);
        loop {
            let result = tokio::select! {
                () = self.cancel.cancelled() => return Err(CallError::Cancelled),
                r = f(self.client.clone()) => r,
            };
            match result {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if is_retriable(s.code()) => {
                    let why = explain(&s);
                    if start.elapsed() >= self.retry.give_up_after {
                        return Err(CallError::GaveUp(why));
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(call = what, error = %why, retry_in_ms = delay.as_millis() as u64, "collector call failed, retrying");
                    tokio::select! {
                        () = self.cancel.cancelled() => return Err(CallError::Cancelled),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(s) => return Err(CallError::Permanent(s)),
            }
        }
    }

    /// Uploads a job whose extraction is running or finished, then cleans its
    /// spool directory unless the outcome is [`JobOutcome::Pending`].
    /// `stop` (for a job still being extracted) is cancelled when the
    /// transmission ends without loading, so the extraction stops early; the
    /// spool directory is removed only once the extraction has ended.
    pub async fn upload(
        &self,
        dir: JobDir,
        progress: watch::Receiver<Progress>,
        stop: Option<CancellationToken>,
        begun: Option<oneshot::Sender<Committed>>,
    ) -> JobOutcome {
        let mut extraction = progress.clone();
        let meta = match dir.meta() {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(dir = %dir.path().display(), error = %e, "unreadable job in spool; removing it");
                let _ = dir.remove();
                return JobOutcome::Failed {
                    reason: e.to_string(),
                };
            }
        };
        let outcome = match self.upload_inner(&meta, &dir, progress, begun).await {
            Ok(o) => o,
            Err(status) => {
                let reason = explain(&status);
                match status.code() {
                    // Identity problems: keep the data for after re-enrollment.
                    Code::Unauthenticated | Code::PermissionDenied => {
                        tracing::error!(job = %meta.job, error = %reason, "collector refused this agent");
                        JobOutcome::Pending { reason }
                    }
                    _ => JobOutcome::Refused { reason },
                }
            }
        };
        match &outcome {
            JobOutcome::Pending { reason } => {
                tracing::warn!(job = %meta.job, run = %meta.run_id, %reason, "job left in the spool");
            }
            other => {
                if let Some(stop) = stop {
                    stop.cancel();
                }
                while matches!(extraction.borrow_and_update().phase, Phase::Extracting) {
                    if extraction.changed().await.is_err() {
                        break;
                    }
                }
                if let Err(e) = dir.remove() {
                    tracing::error!(job = %meta.job, error = %e, "cannot clean the spool");
                }
                match other {
                    JobOutcome::Committed {
                        transmission_id,
                        rows,
                    } => {
                        tracing::info!(job = %meta.job, transmission = transmission_id, rows, "transmission committed")
                    }
                    JobOutcome::Failed { reason } | JobOutcome::Refused { reason } => {
                        tracing::error!(job = %meta.job, %reason, "transmission did not load")
                    }
                    JobOutcome::Superseded { transmission_id } => {
                        tracing::info!(job = %meta.job, transmission = transmission_id, "transmission superseded by a newer snapshot of the job")
                    }
                    JobOutcome::Pending { .. }
                    | JobOutcome::Abandoned { .. }
                    | JobOutcome::Skipped { .. } => {}
                }
            }
        }
        outcome
    }

    /// Ends a transmission without loading it: `failed` for a source
    /// failure, otherwise aborted (and [`JobOutcome::Abandoned`]).
    async fn end(
        &self,
        meta: &JobMeta,
        id: i64,
        failed: bool,
        reason: String,
    ) -> Result<JobOutcome, Status> {
        match self.abort(meta, id, failed, &reason).await {
            Ok(()) if failed => Ok(JobOutcome::Failed { reason }),
            Ok(()) => Ok(JobOutcome::Abandoned { reason }),
            Err(e) => e.into_outcome("abort"),
        }
    }

    async fn abort(
        &self,
        meta: &JobMeta,
        transmission_id: i64,
        failed: bool,
        reason: &str,
    ) -> Result<(), CallError> {
        let req = pb::AbortRequest {
            transmission_id,
            run_id: meta.run_id.to_string(),
            job: meta.job.clone(),
            reason: reason.to_string(),
            failed,
            mode: pb_mode(&meta.mode) as i32,
            target: meta.target.clone(),
            plan_version: meta.plan_version.clone(),
        };
        self.call("abort", |mut c| {
            let req = req.clone();
            async move { c.abort(req).await }
        })
        .await
        .map(|_| ())
    }

    async fn upload_inner(
        &self,
        meta: &JobMeta,
        dir: &JobDir,
        mut progress: watch::Receiver<Progress>,
        begun_tx: Option<oneshot::Sender<Committed>>,
    ) -> Result<JobOutcome, Status> {
        // A job that failed before it could begin is recorded by run and job.
        let initial = progress.borrow().phase.clone();
        if meta.columns.is_empty() {
            // Ended before its columns were known: recorded by run and job.
            match initial {
                Phase::Failed(reason) => return self.end(meta, 0, true, reason).await,
                Phase::Interrupted(reason) => return self.end(meta, 0, false, reason).await,
                _ => {}
            }
        }
        let begin = pb::BeginRequest {
            run_id: meta.run_id.to_string(),
            job: meta.job.clone(),
            mode: pb_mode(&meta.mode) as i32,
            target: meta.target.clone(),
            columns: meta
                .columns
                .iter()
                .map(|c| pb::Column {
                    name: c.name.clone(),
                    source_type: c.source_type.clone(),
                    target_type: c.target_type.clone(),
                    pseudonymised: c.pseudonymised,
                })
                .collect(),
            plan_version: meta.plan_version.clone(),
            plan: meta.plan,
            snapshot: meta.snapshot.clone(),
            source_server_version: meta.server_version,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            claimed_ibge: self.claimed_ibge.clone(),
            copy_format: match meta.copy_format {
                CopyFormat::Text => pb::CopyFormat::Text,
                CopyFormat::Binary => pb::CopyFormat::Binary,
            } as i32,
            upsert: meta.upsert.as_ref().map(|u| pb::Upsert {
                key: u.key.clone(),
                watermark: u.watermark.clone(),
                snapshot_at_us: micros(u.snapshot_at),
                proves_watermark_us: u.proves.map(micros),
            }),
        };
        let begun = match self
            .call("begin", |mut c| {
                let req = begin.clone();
                async move { c.begin(req).await }
            })
            .await
        {
            Ok(b) => b,
            Err(e) => return e.into_outcome("begin"),
        };
        let id = begun.transmission_id;
        if let Some(tx) = begun_tx {
            // The extraction of an upsert job waits for this.
            let _ = tx.send(Committed {
                watermark: begun.committed_watermark_us.and_then(from_micros),
                reconciled_at: begun.reconciled_at_us.and_then(from_micros),
            });
        }
        if begun.state == pb::State::Committed as i32 {
            return Ok(JobOutcome::Committed {
                transmission_id: id,
                rows: 0,
            });
        }
        let mut held: HashSet<u32> = begun.held_seqs.into_iter().collect();
        tracing::debug!(job = %meta.job, transmission = id, held = held.len(), "transmission begun");

        let mut next = 1u32;
        let mut puts: JoinSet<Result<u32, PutError>> = JoinSet::new();
        let done = loop {
            let p = progress.borrow_and_update().clone();
            match &p.phase {
                Phase::Failed(reason) => {
                    puts.abort_all();
                    return self.end(meta, id, true, reason.clone()).await;
                }
                Phase::Interrupted(reason) => {
                    puts.abort_all();
                    return self.end(meta, id, false, reason.clone()).await;
                }
                _ => {}
            }
            while next <= p.written && puts.len() < self.in_flight {
                if !held.contains(&next) {
                    let this = self.clone();
                    let dir = dir.clone();
                    let seq = next;
                    puts.spawn(async move { this.put(id, &dir, seq).await.map(|_| seq) });
                }
                next += 1;
            }
            if let Phase::Done(d) = &p.phase
                && puts.is_empty()
                && next > d.batches
            {
                break d.clone();
            }
            let extracting = matches!(p.phase, Phase::Extracting);
            tokio::select! {
                Some(joined) = puts.join_next(), if !puts.is_empty() => {
                    match joined {
                        Ok(Ok(seq)) => { held.insert(seq); }
                        Ok(Err(PutError::Call(e))) => { puts.abort_all(); return e.into_outcome("put batch"); }
                        Ok(Err(PutError::Spool(e))) => {
                            puts.abort_all();
                            let reason = format!("spooled data is unusable: {e}");
                            return match self.abort(meta, id, false, &reason).await {
                                Ok(()) => Ok(JobOutcome::Failed { reason }),
                                Err(e) => e.into_outcome("abort"),
                            };
                        }
                        Err(join) => return Ok(JobOutcome::Pending { reason: format!("upload task: {join}") }),
                    }
                }
                changed = progress.changed(), if extracting => {
                    let still_extracting = matches!(progress.borrow().phase, Phase::Extracting);
                    if changed.is_err() && still_extracting {
                        puts.abort_all();
                        return Ok(JobOutcome::Pending { reason: "extraction was interrupted".into() });
                    }
                }
                () = self.cancel.cancelled() => {
                    puts.abort_all();
                    return Ok(JobOutcome::Pending { reason: "agent shutting down; the spool keeps the data".into() });
                }
            }
        };

        // Commit; if the collector lacks batches (e.g. it lost a race with a
        // restart), send what it is missing and commit again.
        for _round in 0..5 {
            let req = pb::CommitRequest {
                transmission_id: id,
                total_batches: done.batches,
                total_rows: done.rows,
                digest: done.digest.clone(),
                full: done.full,
                since_us: done.since.map(micros),
            };
            match self
                .call("commit", |mut c| {
                    let req = req.clone();
                    async move { c.commit(req).await }
                })
                .await
            {
                Ok(r) if r.superseded => {
                    return Ok(JobOutcome::Superseded {
                        transmission_id: id,
                    });
                }
                Ok(r) => {
                    return Ok(JobOutcome::Committed {
                        transmission_id: id,
                        rows: r.rows,
                    });
                }
                Err(CallError::Permanent(s))
                    if s.code() == Code::FailedPrecondition
                        && s.message().contains("batches missing") =>
                {
                    tracing::warn!(job = %meta.job, transmission = id, error = %s.message(), "collector misses batches; resending");
                    let status = match self
                        .call("status", |mut c| async move {
                            c.status(pb::StatusRequest {
                                transmission_id: id,
                            })
                            .await
                        })
                        .await
                    {
                        Ok(s) => s,
                        Err(e) => return e.into_outcome("status"),
                    };
                    let held: HashSet<u32> = status.held_seqs.into_iter().collect();
                    for seq in (1..=done.batches).filter(|s| !held.contains(s)) {
                        match self.put(id, dir, seq).await {
                            Ok(()) => {}
                            Err(PutError::Call(e)) => return e.into_outcome("put batch"),
                            Err(PutError::Spool(e)) => {
                                let reason = format!("spooled data is unusable: {e}");
                                let _ = self.abort(meta, id, false, &reason).await;
                                return Ok(JobOutcome::Failed { reason });
                            }
                        }
                    }
                }
                Err(e) => return e.into_outcome("commit"),
            }
        }
        Ok(JobOutcome::Pending {
            reason: "the collector kept reporting missing batches".into(),
        })
    }

    async fn put(&self, id: i64, dir: &JobDir, seq: u32) -> Result<(), PutError> {
        let dir2 = dir.clone();
        let batch = tokio::task::spawn_blocking(move || dir2.read_batch(seq))
            .await
            .map_err(|e| {
                PutError::Spool(SpoolError::Io {
                    path: dir.path().to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                })
            })?
            .map_err(PutError::Spool)?;
        let data = bytes::Bytes::from(batch.frame);
        let h = batch.header;
        self.call("put batch", |mut c| {
            let req = pb::PutBatchRequest {
                transmission_id: id,
                seq: h.seq,
                rows: h.rows,
                raw_len: h.raw_len,
                crc32c: h.crc32c,
                data: data.clone(),
            };
            async move {
                // The link's speed, for the zstd level (pipeline::level).
                let timer = link::global().begin();
                let len = req.data.len();
                let answer = c.put_batch(req).await;
                if answer.is_ok() {
                    timer.finish(len);
                }
                answer
            }
        })
        .await
        .map(|_| ())
        .map_err(PutError::Call)
    }
}

enum PutError {
    Call(CallError),
    Spool(SpoolError),
}
