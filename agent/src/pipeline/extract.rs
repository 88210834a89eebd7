//! Extraction: all jobs of a run read one consistent snapshot
//! (`REPEATABLE READ READ ONLY`), each inside its own savepoint so a failing
//! query fails only its job. `COPY (query) TO STDOUT` is streamed without
//! decoding rows: messages (one per row) are coalesced into ~4 MiB batches,
//! cut at row boundaries, and handed to a compressor thread that writes them
//! to the spool while the next batch is being read. The snapshot is released
//! as soon as the last job is extracted, whatever the upload is doing.

use std::time::Instant;

use bytes::BytesMut;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{Client, GenericClient, IsolationLevel};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use transmissor_proto::batch::BatchCompressor;
use transmissor_proto::checksum::TransmissionDigest;

use crate::config::CopyFormatChoice;
use transmissor_plan::PecVersion;

use crate::config::{AgentConfig, JobConfig};
use crate::jobs::JobSet;
use crate::pipeline::incremental::{self, Committed, History, Observation, Read};
use crate::pipeline::level::LevelPicker;
use crate::pipeline::minimise::{self, JobPrivacy};
use crate::pipeline::pseudonym::{PseudonymError, Pseudonymiser};
use crate::pipeline::source::{self, SourceError};
use crate::pipeline::spool::{
    CopyFormat, DoneMeta, JobDir, JobMeta, Spool, SpoolError, UpsertMeta,
};
use transmissor_proto::copy_binary::{self, CopyBinaryError};

/// How far a job's extraction has come; watched by its uploader.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Batches `1..=written` are durable in the spool.
    pub written: u32,
    pub phase: Phase,
}

#[derive(Debug, Clone)]
pub enum Phase {
    Extracting,
    Done(DoneMeta),
    /// The source failed the job: its transmission is recorded as failed.
    Failed(String),
    /// Found unfinished at start-up (the agent stopped mid-extraction): its
    /// transmission is aborted and the next run extracts the job again.
    Interrupted(String),
}

/// A job whose extraction has started: its spool directory and progress.
pub struct StartedJob {
    pub dir: JobDir,
    pub progress: watch::Receiver<Progress>,
    /// Cancelled by the uploader when the collector will not take the job:
    /// its extraction then stops early instead of spooling in vain.
    pub stop: CancellationToken,
    /// Upsert jobs: the uploader sends what `Begin` answered (the committed
    /// watermark), which the extraction waits for before reading rows.
    pub begun: Option<oneshot::Sender<Committed>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("extraction cancelled")]
    Cancelled,
    #[error("extraction stopped: the collector will not take this job's transmission")]
    Stopped,
    #[error("the source sent malformed COPY binary data: {0}")]
    Framing(#[from] CopyBinaryError),
    #[error("upsert job cannot run: {0}")]
    Upsert(String),
    #[error("pseudonymising a row: {0}")]
    Pseudonym(#[from] PseudonymError),
}

/// What a run learnt of its source before extracting.
#[derive(Debug, Default)]
pub struct RunFacts {
    /// The PEC version (newest `db/v<version>/` of `tb_migracao`), if any.
    pub pec_version: Option<PecVersion>,
    /// Jobs left out because their PEC-version range excludes this
    /// database, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// The PEC version of the source, from its migration log, in the run's
/// transaction. `None` when the log is absent or names no version.
pub async fn pec_version(
    tx: &impl GenericClient,
    log_exists: bool,
) -> Result<Option<PecVersion>, SourceError> {
    if !log_exists {
        return Ok(None);
    }
    let rows = tx
        .query(include_str!("queries/pec_migrations.sql"), &[])
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .filter_map(|v| v.trim_end_matches('.').parse::<PecVersion>().ok())
        .max())
}

/// Extracts the jobs of `jobs` in one snapshot. `started` is called as soon
/// as a job's spool directory exists, so its upload can begin while
/// extraction goes on. A job whose PEC-version range excludes this database
/// is skipped (listed in the returned [`RunFacts`]). Returns an error only
/// when the run as a whole could not start (e.g. the source database is
/// unreachable); job failures are reported through each job's [`Progress`].
pub async fn extract_run(
    cfg: &AgentConfig,
    jobs: &JobSet,
    spool: &Spool,
    run_id: Uuid,
    mut started: impl FnMut(StartedJob),
    cancel: &CancellationToken,
) -> Result<RunFacts, ExtractError> {
    let t0 = Instant::now();
    let mut client = source::connect(&cfg.source).await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(SourceError::from)?;
    let row = tx
        .query_one(include_str!("queries/snapshot_open.sql"), &[])
        .await
        .map_err(SourceError::from)?;
    let (snapshot, server_version, has_log): (String, i32, bool) =
        (row.get(0), row.get(1), row.get(2));
    let observed = Observation {
        t: chrono::DateTime::from_timestamp_micros(row.get(3)).unwrap_or_default(),
        xmin: row.get(4),
        xmax: row.get(5),
    };
    let mut history = History::load(&cfg.agent.state_dir);
    let proves = history.proves(&observed);
    if let Err(e) = history.record(&cfg.agent.state_dir, observed) {
        tracing::warn!(error = %e, "snapshot observation not kept; later runs prove less");
    }
    let mut facts = RunFacts {
        pec_version: pec_version(&tx, has_log).await?,
        skipped: Vec::new(),
    };
    let pec = facts.pec_version.as_ref().map(ToString::to_string);
    tracing::info!(%run_id, %snapshot, server_version, pec_version = pec.as_deref().unwrap_or("unknown"), jobs = jobs.jobs.len(), "snapshot opened");

    for spec in &jobs.jobs {
        let job = &spec.job;
        if cancel.is_cancelled() {
            return Err(ExtractError::Cancelled);
        }
        if let Some(range) = &spec.pec_version {
            let applies = facts
                .pec_version
                .as_ref()
                .is_some_and(|v| range.contains(v));
            if !applies {
                let reason = format!(
                    "needs PEC {range}; this database is {}",
                    pec.as_deref()
                        .map_or("of unknown PEC version".to_string(), |v| format!("PEC {v}"))
                );
                tracing::info!(%run_id, job = %job.name, %reason, "job skipped");
                facts.skipped.push((job.name.clone(), reason));
                continue;
            }
        }
        tx.batch_execute("SAVEPOINT transmissor_job")
            .await
            .map_err(SourceError::from)?;
        let upsert = job.upsert().ok().flatten().map(|u| UpsertMeta {
            key: u.key,
            watermark: u.watermark,
            snapshot_at: observed.t,
            proves,
        });
        let base = JobMeta {
            run_id,
            job: job.name.clone(),
            mode: job.mode.clone(),
            target: job.target.clone(),
            plan: jobs.plan,
            plan_version: jobs.plan_version.clone(),
            columns: Vec::new(),
            snapshot: snapshot.clone(),
            server_version,
            created_at: chrono::Utc::now(),
            copy_format: CopyFormat::Text,
            upsert,
        };
        let reconcile_slot = spec
            .reconcile
            .as_ref()
            .and_then(|t| t.latest_at_or_before(chrono::Utc::now(), cfg.schedule.timezone.0));
        let privacy = spec.privacy.as_deref();
        let result = extract_job(
            &tx,
            cfg,
            spool,
            job,
            privacy,
            base,
            reconcile_slot,
            &mut started,
            cancel,
        )
        .await;
        match result {
            Ok(()) => tx
                .batch_execute("RELEASE SAVEPOINT transmissor_job")
                .await
                .map_err(SourceError::from)?,
            Err(ExtractError::Cancelled) => return Err(ExtractError::Cancelled),
            Err(e) => {
                tracing::error!(job = %job.name, error = %e, "job extraction failed");
                tx.batch_execute("ROLLBACK TO SAVEPOINT transmissor_job")
                    .await
                    .map_err(SourceError::from)?;
            }
        }
    }
    tx.commit().await.map_err(SourceError::from)?;
    drop(client);
    tracing::info!(%run_id, elapsed_ms = t0.elapsed().as_millis() as u64, "snapshot released: extraction finished");
    Ok(facts)
}

/// Extracts one job. Any failure is also recorded in the job's spool
/// directory (`failed.json`) and progress, so it reaches the collector.
#[allow(clippy::too_many_arguments)]
async fn extract_job(
    tx: &tokio_postgres::Transaction<'_>,
    cfg: &AgentConfig,
    spool: &Spool,
    job: &JobConfig,
    privacy: Option<&JobPrivacy>,
    mut meta: JobMeta,
    reconcile_slot: Option<chrono::DateTime<chrono::Utc>>,
    started: &mut impl FnMut(StartedJob),
    cancel: &CancellationToken,
) -> Result<(), ExtractError> {
    let query = job.query.trim().trim_end_matches(';').trim_end();
    let upsert = job.upsert().map_err(ExtractError::Upsert)?;
    // The plan's personal-data policy: checked on the described columns,
    // dropped ones left out of the query, pseudonymised ones cast to text.
    // An upsert job's key and watermark must be in what is left.
    let described = match minimise::describe(tx, privacy, query).await {
        Err(e) => Err(ExtractError::from(e)),
        Ok(m) => match &upsert {
            None => Ok((m, None)),
            Some(u) => incremental::watermark_type(u, &m.columns)
                .map(|ty| (m, Some(ty)))
                .map_err(ExtractError::Upsert),
        },
    };
    if let Ok((m, _)) = &described {
        meta.columns = m.columns.clone();
        if cfg.source.copy_format == CopyFormatChoice::Binary
            && source::binary_capable(tx, &m.query).await.unwrap_or(false)
        {
            meta.copy_format = CopyFormat::Binary;
        }
    }
    let described = described.and_then(|(m, ty)| {
        let p = m
            .pseudonymiser(&cfg.agent.state_dir, meta.copy_format)
            .map_err(ExtractError::from)?;
        Ok((m, p, ty))
    });
    let dir = spool.create_job(&meta)?;
    // A query that cannot even be described is failed before its upload
    // starts, so the uploader records it without opening a transmission.
    let described = match described {
        Ok(cols) => Ok(cols),
        Err(e) => {
            dir.mark_failed(&e.to_string())?;
            Err(e)
        }
    };
    let (progress_tx, progress_rx) = watch::channel(Progress {
        written: 0,
        phase: match &described {
            Ok(_) => Phase::Extracting,
            Err(e) => Phase::Failed(e.to_string()),
        },
    });
    let stop = CancellationToken::new();
    let (begun_tx, begun_rx) = match &upsert {
        Some(_) => {
            let (t, r) = oneshot::channel();
            (Some(t), Some(r))
        }
        None => (None, None),
    };
    started(StartedJob {
        dir: dir.clone(),
        progress: progress_rx,
        stop: stop.clone(),
        begun: begun_tx,
    });
    let (minimised, pseudonymiser, watermark_type) = described?;
    let fail = |reason: String| {
        let _ = dir.mark_failed(&reason);
        progress_tx.send_modify(|p| p.phase = Phase::Failed(reason));
    };

    // An upsert job reads from the committed watermark, which `Begin`
    // answers; without an answer in time it reads everything (always
    // correct: a full transmission also reconciles deletes).
    let mut query = minimised.query.clone();
    let (mut full, mut since) = (false, None);
    if let (Some(u), Some(ty), Some(rx)) = (&upsert, watermark_type, begun_rx) {
        let committed = tokio::select! {
            () = cancel.cancelled() => return Err(ExtractError::Cancelled),
            () = stop.cancelled() => return Err(ExtractError::Stopped),
            r = tokio::time::timeout(incremental::BEGIN_WAIT, rx) => r.ok().and_then(Result::ok),
        };
        let read = match committed {
            Some(c) => {
                incremental::decide(c.watermark, c.reconciled_at, reconcile_slot, u.lookback)
            }
            None => Read::Full(incremental::FullWhy::CollectorSilent),
        };
        match read {
            Read::Full(why) => {
                full = true;
                tracing::info!(job = %job.name, why = why.as_str(), "upsert job read in full");
            }
            Read::Since(bound) => {
                let set = tx
                    .query_one(
                        incremental::SET_BOUND,
                        &[
                            &incremental::bound_text(bound),
                            &cfg.schedule.timezone.0.name(),
                        ],
                    )
                    .await
                    .map_err(SourceError::from);
                if let Err(e) = set {
                    fail(e.to_string());
                    return Err(e.into());
                }
                query = incremental::filtered(&query, &u.watermark, ty);
                since = Some(bound);
                tracing::info!(job = %job.name, since = %incremental::bound_text(bound), "upsert job read from its watermark");
            }
        }
    }

    let t0 = Instant::now();
    let copy = CopyOut {
        statement: format!(
            "COPY ({query}) TO STDOUT{}",
            match meta.copy_format {
                CopyFormat::Text => "",
                CopyFormat::Binary => " (FORMAT binary)",
            }
        ),
        framing: Framing::new(meta.copy_format, meta.columns.len()),
        pseudonymiser,
    };
    match copy_job(tx, cfg, &dir, copy, &progress_tx, cancel, &stop).await {
        Ok(mut done) => {
            done.full = full;
            done.since = since;
            dir.finish(&done)?;
            tracing::info!(job = %job.name, rows = done.rows, batches = done.batches, raw_bytes = done.raw_bytes,
                elapsed_ms = t0.elapsed().as_millis() as u64, "job extracted");
            progress_tx.send_modify(|p| p.phase = Phase::Done(done));
            Ok(())
        }
        Err(ExtractError::Cancelled) => Err(ExtractError::Cancelled),
        Err(e) => {
            fail(e.to_string());
            Err(e)
        }
    }
}

struct RawBatch {
    seq: u32,
    rows: u64,
    bytes: BytesMut,
}

async fn copy_job(
    tx: &tokio_postgres::Transaction<'_>,
    cfg: &AgentConfig,
    dir: &JobDir,
    copy: CopyOut,
    progress: &watch::Sender<Progress>,
    cancel: &CancellationToken,
    stop: &CancellationToken,
) -> Result<DoneMeta, ExtractError> {
    let batch_size = cfg.spool.batch_raw_bytes.as_u64() as usize;
    let job_name = dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let mut levels = LevelPicker::new(cfg, job_name.as_deref().unwrap_or_default());

    // The compressor/writer runs on a blocking thread, in sequence order, so
    // COPY parsing and compression overlap. Two batches queue at most.
    let (to_writer, mut from_reader) = mpsc::channel::<RawBatch>(2);
    // Raw batch buffers circulate between the reader and the writer (at most
    // four exist: one filling, two queued, one being compressed), so the
    // steady state allocates nothing.
    let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<BytesMut>();
    let writer_dir = dir.clone();
    let writer_progress = progress.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<DoneMeta, SpoolError> {
        let mut digest = TransmissionDigest::new();
        let mut raw_bytes = 0u64;
        let syncer = writer_dir.syncer();
        let mut compressor =
            BatchCompressor::new(levels.initial()).map_err(|e| SpoolError::Io {
                path: writer_dir.path().to_path_buf(),
                source: e,
            })?;
        while let Some(mut b) = from_reader.blocking_recv() {
            let batch = levels.before_batch(&mut compressor, &b.bytes);
            let h = writer_dir.write_batch_with(&mut compressor, b.seq, b.rows, &b.bytes)?;
            levels.after_batch(batch, &compressor, b.bytes.len());
            // The buffer goes back to the reader for a later batch.
            b.bytes.clear();
            let _ = recycle_tx.send(b.bytes);
            syncer.submit(h.seq);
            digest.add(h.seq, h.rows, h.crc32c);
            raw_bytes += h.raw_len;
            // Uploading a batch before it is durable is fine: if the agent's
            // machine loses power first, the job was not finished and is
            // aborted and extracted again.
            writer_progress.send_modify(|p| p.written = h.seq);
        }
        syncer.wait()?;
        Ok(DoneMeta {
            batches: digest.batches(),
            rows: digest.rows(),
            raw_bytes,
            digest: digest.finish(),
            full: false,
            since: None,
        })
    });

    let read = async {
        let CopyOut {
            statement,
            mut framing,
            mut pseudonymiser,
        } = copy;
        let stream = tx.copy_out(&statement).await.map_err(SourceError::from)?;
        futures::pin_mut!(stream);
        let mut buf = BytesMut::with_capacity(batch_size + 64 * 1024);
        let (mut rows, mut seq) = (0u64, 0u32);
        loop {
            let chunk = tokio::select! {
                () = cancel.cancelled() => return Err(ExtractError::Cancelled),
                () = stop.cancelled() => return Err(ExtractError::Stopped),
                c = stream.next() => c,
            };
            match chunk {
                Some(Ok(data)) => {
                    // One CopyData message per row in COPY TO: a row boundary.
                    let Some(row) = framing.row(&data)? else {
                        continue;
                    };
                    match pseudonymiser.as_mut() {
                        None => buf.extend_from_slice(row),
                        Some(p) => p.append_row(row, &mut buf)?,
                    }
                    rows += 1;
                    if buf.len() >= batch_size {
                        seq += 1;
                        let next = recycle_rx
                            .try_recv()
                            .unwrap_or_else(|_| BytesMut::with_capacity(batch_size + 64 * 1024));
                        let b = RawBatch {
                            seq,
                            rows,
                            bytes: std::mem::replace(&mut buf, next),
                        };
                        rows = 0;
                        if to_writer.send(b).await.is_err() {
                            break; // the writer failed; its error is reported below
                        }
                    }
                }
                Some(Err(e)) => return Err(SourceError::from(e).into()),
                None => break,
            }
        }
        if !buf.is_empty() {
            seq += 1;
            let _ = to_writer
                .send(RawBatch {
                    seq,
                    rows,
                    bytes: std::mem::take(&mut buf),
                })
                .await;
        }
        drop(to_writer);
        Ok::<(), ExtractError>(())
    };
    let read_result = read.await;
    let written = writer.await.map_err(|e| SpoolError::Io {
        path: dir.path().to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    // A writer error (e.g. spool full) explains a reader that stopped early.
    let done = written?;
    read_result?;
    Ok(done)
}

/// A job's `COPY ... TO STDOUT` statement and how to read its messages.
struct CopyOut {
    statement: String,
    framing: Framing,
    /// Rewrites pseudonymised fields (jobs that have some).
    pseudonymiser: Option<Pseudonymiser>,
}

/// Turns COPY's CopyData messages into rows: text messages are rows as
/// they are; binary ones lose the stream's header (first message) and
/// trailer (last), and every tuple's structure is checked.
enum Framing {
    Text,
    Binary {
        fields: i16,
        started: bool,
        ended: bool,
    },
}

impl Framing {
    fn new(format: CopyFormat, columns: usize) -> Self {
        match format {
            CopyFormat::Text => Self::Text,
            CopyFormat::Binary => Self::Binary {
                fields: i16::try_from(columns).unwrap_or(i16::MAX),
                started: false,
                ended: false,
            },
        }
    }

    /// The row one message holds, if it holds one.
    fn row<'a>(&mut self, msg: &'a [u8]) -> Result<Option<&'a [u8]>, CopyBinaryError> {
        let Self::Binary {
            fields,
            started,
            ended,
        } = self
        else {
            return Ok(Some(msg));
        };
        let mut msg = msg;
        if !*started {
            msg = copy_binary::strip_header(msg)?;
            *started = true;
            if msg.is_empty() {
                return Ok(None);
            }
        }
        if *ended {
            return Err(CopyBinaryError::Trailing(msg.len()));
        }
        if copy_binary::is_trailer(msg) {
            *ended = true;
            return Ok(None);
        }
        copy_binary::check_tuple(msg, *fields)?;
        Ok(Some(msg))
    }
}

/// Used by `transmissor-agent check`: describe every job without
/// extracting; also the PEC version.
pub async fn describe_jobs(
    cfg: &AgentConfig,
    jobs: &JobSet,
) -> Result<(Option<PecVersion>, Vec<(String, Result<usize, String>)>), SourceError> {
    let mut client: Client = source::connect(&cfg.source).await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let has_log: bool = tx
        .query_one(include_str!("queries/snapshot_open.sql"), &[])
        .await?
        .get(2);
    let pec = pec_version(&tx, has_log).await?;
    let mut out = Vec::new();
    for spec in &jobs.jobs {
        let job = &spec.job;
        tx.batch_execute("SAVEPOINT transmissor_check").await?;
        let query = job.query.trim().trim_end_matches(';').trim_end();
        match minimise::describe(&tx, spec.privacy.as_deref(), query).await {
            Ok(cols) => {
                tx.batch_execute("RELEASE SAVEPOINT transmissor_check")
                    .await?;
                out.push((job.name.clone(), Ok(cols.columns.len())));
            }
            Err(e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT transmissor_check")
                    .await?;
                out.push((job.name.clone(), Err(e.to_string())));
            }
        }
    }
    tx.rollback().await?;
    Ok((pec, out))
}
