//! The faults, one method per kind, and the blockers that catch a commit
//! inside its transaction (see the parent module for what each does).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use tokio_postgres::Client;

use transmissor_tests::procs::Proc;

use super::Injected;
use super::campaign::{Campaign, Mark, POLL, late, wait_agent};
use super::source::{self, SchemaChange};
use super::spool::{self, dir_name, job_dirs, spooled_batches};

/// Where a snapshot commit is caught inside its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CommitPoint {
    /// Before its `DELETE`: the municipality's `target_slices` row is held.
    SliceRow,
    /// After its `DELETE` + `INSERT`, at `DROP TABLE` of the staging table.
    StagingDrop,
}

impl CommitPoint {
    fn random(rng: &mut impl Rng) -> Self {
        if rng.random_bool(0.5) {
            Self::SliceRow
        } else {
            Self::StagingDrop
        }
    }

    /// `LIKE` pattern of the statement a collector backend waits in.
    pub fn query_pattern(self) -> &'static str {
        match self {
            Self::SliceRow => "%target_slices%",
            Self::StagingDrop => "DROP TABLE transmissor\\_staging%",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::SliceRow => "commit waiting before its DELETE (slice row held)",
            Self::StagingDrop => "commit waiting at its staging DROP (rows replaced, uncommitted)",
        }
    }
}

/// An extra connection holding, in an open transaction, a lock the commit
/// needs. Dropping it closes the connection, which ends the transaction:
/// every path releases it.
struct Blocker {
    client: Client,
}

impl Blocker {
    async fn open(c: &Campaign, sql: &str) -> Result<Self> {
        let client = c.stack.analytic_client().await?;
        client
            .batch_execute(sql)
            .await
            .with_context(|| format!("blocker: {sql}"))?;
        Ok(Self { client })
    }

    /// Ends the blocker's transaction (then closes its connection).
    async fn release(self) -> Result<()> {
        self.client.batch_execute("ROLLBACK").await?;
        Ok(())
    }
}

/// An agent run whose snapshot commit was (or was to be) caught.
struct Caught {
    agent: Proc,
    blocker: Option<Blocker>,
    /// The commit was seen waiting (false: the agent exited first).
    reached: bool,
    /// Since the agent run started.
    at: Duration,
    /// Backends of the collector waiting at the point.
    waiting_pids: Vec<i32>,
}

/// What a schema round changed, for the checks after recovery.
pub(super) struct SchemaRound {
    pub change: SchemaChange,
    /// The analyst's `BEGIN` (epoch seconds, the server's clock).
    pub analyst_began: f64,
    pub round: u32,
}

impl Campaign {
    /// A random batch count from `from` up to `pct`% of the snapshot job's
    /// batches (about 100% is just before the commit).
    fn point(&mut self, from: i64, pct: i64) -> i64 {
        let upto = (self.batches * pct / 100).max(from);
        self.rng.random_range(from..=upto)
    }

    pub async fn collector_kill(&mut self, n: u32) -> Result<Injected> {
        let k = self.point(0, 99);
        let outage = Duration::from_millis(self.rng.random_range(0..1500));
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let reached = self.wait_mark(&mut agent, Mark::Held(k)).await?;
        let at = t.elapsed();
        let held = self.held().await.unwrap_or(-1);
        self.stack.kill_collector();
        tokio::time::sleep(outage).await;
        self.stack.start_collector().await?;
        let what = format!(
            "{held} batches held{}; down {} ms",
            late(reached),
            outage.as_millis()
        );
        Ok(Injected::new(Some(at), what, Some(agent)))
    }

    pub async fn agent_kill(&mut self, n: u32) -> Result<Injected> {
        let extracting = self.rng.random_bool(0.5);
        let k = self.point(1, 99);
        let mark = if extracting {
            Mark::Spooled(k as u64)
        } else {
            Mark::Held(k)
        };
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let reached = self.wait_mark(&mut agent, mark).await?;
        let at = t.elapsed();
        agent.kill();
        let spooled = spooled_batches(&self.spool_dir());
        let held = self.held().await.unwrap_or(-1);
        let phase = if extracting {
            "extracting"
        } else {
            "uploading"
        };
        let what = format!(
            "{phase}: {spooled} batches spooled, {held} held{}",
            late(reached)
        );
        Ok(Injected::new(Some(at), what, None))
    }

    pub async fn analytic_restart(&mut self, n: u32) -> Result<Injected> {
        let mid_commit = self.rng.random_bool(0.5);
        let crash = self.rng.random_bool(0.5);
        let down = Duration::from_millis(self.rng.random_range(500..3000));
        let k = self.point(1, 99);
        let point = CommitPoint::random(&mut self.rng);
        let how = if crash {
            "crash (immediate stop)".to_string()
        } else {
            format!("stopped {} ms", down.as_millis())
        };
        if mid_commit {
            let caught = self.catch_commit(n, point).await?;
            self.restart_analytic(crash, down)?;
            // The blocker's connection died with the server.
            drop(caught.blocker);
            self.probe = None;
            let what = format!("{}{}; {how}", point.describe(), late(caught.reached));
            return Ok(Injected::new(Some(caught.at), what, Some(caught.agent)));
        }
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let reached = self.wait_mark(&mut agent, Mark::Held(k)).await?;
        let at = t.elapsed();
        let held = self.held().await.unwrap_or(-1);
        self.restart_analytic(crash, down)?;
        self.probe = None;
        let what = format!("{held} batches held{}; {how}", late(reached));
        Ok(Injected::new(Some(at), what, Some(agent)))
    }

    fn restart_analytic(&mut self, crash: bool, down: Duration) -> Result<()> {
        let analytic = &mut self.stack.analytic;
        tokio::task::block_in_place(|| {
            if crash {
                return analytic.crash_restart();
            }
            analytic.stop()?;
            std::thread::sleep(down);
            analytic.start_again()
        })
        .context("restarting the analytic server")
    }

    pub async fn network_cut(&mut self, n: u32) -> Result<Injected> {
        let k = self.point(0, 99);
        let cut = Duration::from_millis(self.rng.random_range(2000..6000));
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let reached = self.wait_mark(&mut agent, Mark::Held(k)).await?;
        let at = t.elapsed();
        let held = self.held().await.unwrap_or(-1);
        let before = self.proxy.dropped();
        self.proxy.cut();
        tokio::time::sleep(cut).await;
        self.proxy.restore();
        let dropped = self.proxy.dropped() - before;
        let what = format!(
            "{held} batches held{}; cut {} ms, {dropped} connections dropped",
            late(reached),
            cut.as_millis()
        );
        Ok(Injected::new(Some(at), what, Some(agent)))
    }

    pub async fn spool_full(&mut self, n: u32) -> Result<Injected> {
        let limit = self
            .rng
            .random_range(self.compressed / 10..=self.compressed * 102 / 100);
        self.write_config(Some(limit))?;
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let ok = wait_agent(&mut agent).await;
        self.write_config(None)?;
        let ok = ok?;
        let pct = 100 * limit / self.compressed.max(1);
        let what = format!(
            "max_bytes {limit} ({pct}% of the snapshot job); the run ended after {:.1}s",
            t.elapsed().as_secs_f64()
        );
        let mut injected = Injected::new(None, what, None);
        if ok {
            injected
                .problems
                .push("the run with a small spool exited 0".into());
        }
        if !agent.log_text().contains("spool full") {
            injected
                .problems
                .push(format!("no \"spool full\" in {}", agent.log.display()));
        }
        Ok(injected)
    }

    pub async fn corrupt_spool(&mut self, n: u32) -> Result<Injected> {
        let k = self.point(1, 80);
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        self.wait_mark(&mut agent, Mark::Held(k)).await?;
        let at = t.elapsed();
        self.stack.kill_collector();
        let spooled = self.wait_snapshot_spooled(&mut agent).await;
        agent.kill();
        let Some(job) = spooled else {
            self.stack.start_collector().await?;
            bail!(
                "the snapshot job never finished spooling (agent log {})",
                agent.log.display()
            );
        };
        let run = dir_name(job.parent().unwrap_or(&job));
        let held = self.held_seqs(&run).await?;
        let flipped = spool::flip_unheld_batch(&mut self.rng, &job, &held)?;
        self.stack.start_collector().await?;
        let mut injected = Injected::new(Some(at), flipped, None);
        injected.corrupted_run = Some(run);
        Ok(injected)
    }

    /// Waits (bounded) until the snapshot job's spool directory has
    /// `done.json`; returns that directory.
    async fn wait_snapshot_spooled(&mut self, agent: &mut Proc) -> Option<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline && agent.is_running() {
            let done = job_dirs(&self.spool_dir())
                .into_iter()
                .find(|d| dir_name(d) == "grande" && d.join("done.json").exists());
            if done.is_some() {
                return done;
            }
            tokio::time::sleep(POLL).await;
        }
        None
    }

    /// Sequence numbers the collector holds for a run's snapshot job.
    async fn held_seqs(&self, run: &str) -> Result<BTreeSet<u32>> {
        let analytic = self.stack.analytic_client().await?;
        let rows = analytic
            .query(
                "SELECT b.seq FROM transmissor.batches b JOIN transmissor.transmissions t \
                 ON t.id = b.transmission_id WHERE t.run_id::text = $1 AND t.job = 'grande'",
                &[&run],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect())
    }

    // ---- the commit, caught inside its transaction ---------------------------

    /// Starts an agent run and catches its snapshot commit at `point`:
    /// the slice row is held from the start; the staging table once `Begin`
    /// has created it.
    async fn catch_commit(&mut self, n: u32, point: CommitPoint) -> Result<Caught> {
        let mut blocker = None;
        if point == CommitPoint::SliceRow {
            let sql = format!(
                "BEGIN; SELECT 1 FROM transmissor.target_slices \
                 WHERE target = 'grande' AND ibge = '{}' FOR UPDATE",
                self.m.ibge
            );
            blocker = Some(Blocker::open(self, &sql).await?);
        }
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        if point == CommitPoint::StagingDrop
            && let Some(id) = self.wait_snapshot_open(&mut agent).await?
        {
            let sql = format!(
                "BEGIN; LOCK TABLE {} IN ACCESS SHARE MODE",
                staging_table(id)
            );
            blocker =
                Some(Blocker::open(self, &sql).await.with_context(|| {
                    format!("holding the staging table of open transmission {id}")
                })?);
        }
        let reached = blocker.is_some()
            && self
                .wait_mark(&mut agent, Mark::CommitWaiting(point))
                .await?;
        let at = t.elapsed();
        let waiting_pids = if reached {
            self.waiting_pids(point).await?
        } else {
            Vec::new()
        };
        Ok(Caught {
            agent,
            blocker,
            reached,
            at,
            waiting_pids,
        })
    }

    async fn waiting_pids(&self, point: CommitPoint) -> Result<Vec<i32>> {
        let analytic = self.stack.analytic_client().await?;
        let rows = analytic
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'transmissor-collector' \
                 AND wait_event_type = 'Lock' AND query LIKE $1",
                &[&point.query_pattern()],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// SIGKILL of the collector while its commit waits at a random point.
    /// The blocker is released while the collector is down (its orphaned
    /// backend gets the lock it waited for and must roll back: its client
    /// is gone) or, half of the time, a moment after the restart (the
    /// agent's retried commit then queues behind the orphan first).
    pub async fn commit_kill(&mut self, n: u32) -> Result<Injected> {
        let point = CommitPoint::random(&mut self.rng);
        let outage = Duration::from_millis(self.rng.random_range(0..1500));
        let release_late = self.rng.random_bool(0.5);
        let delay = Duration::from_millis(self.rng.random_range(0..1500));
        let caught = self.catch_commit(n, point).await?;
        self.stack.kill_collector();
        let mut problems = Vec::new();
        let (orphans_gone, gone_after) = if release_late {
            tokio::time::sleep(outage).await;
            let restarted = self.stack.start_collector().await;
            tokio::time::sleep(delay).await;
            let released = release(caught.blocker).await;
            restarted?;
            released?;
            self.wait_backends_gone(&caught.waiting_pids).await?
        } else {
            let released = release(caught.blocker).await;
            let gone = self.wait_backends_gone(&caught.waiting_pids).await;
            // With the collector still down, nothing but the orphan could
            // have ended the transmission.
            let state = self.round_snapshot_state().await;
            tokio::time::sleep(
                outage.saturating_sub(gone.as_ref().map_or(Duration::ZERO, |g| g.1)),
            )
            .await;
            self.stack.start_collector().await?;
            released?;
            if !caught.waiting_pids.is_empty() && state?.as_deref() != Some("open") {
                problems.push(
                    "the snapshot transmission caught mid-commit was no longer open once the \
                     killed collector's backend had ended (did its half-done commit commit?)"
                        .to_string(),
                );
            }
            gone?
        };
        let when = if release_late {
            format!(
                "down {} ms, released {} ms after the restart",
                outage.as_millis(),
                delay.as_millis()
            )
        } else {
            format!(
                "released, then down {} ms",
                outage.max(gone_after).as_millis()
            )
        };
        let mut what = format!("{}{}; {when}", point.describe(), late(caught.reached));
        if !orphans_gone {
            problems.push(format!(
                "the killed collector's backend(s) {:?} still ran {} ms after the blocker was released",
                caught.waiting_pids,
                gone_after.as_millis()
            ));
        } else if !caught.waiting_pids.is_empty() {
            what.push_str(&format!(
                "; orphaned backend gone {} ms after release",
                gone_after.as_millis()
            ));
        }
        let mut injected = Injected::new(Some(caught.at), what, Some(caught.agent));
        injected.problems = problems;
        Ok(injected)
    }

    /// Waits (up to 10 s) until none of `pids` is a backend any more;
    /// whether they went, and how long that took.
    async fn wait_backends_gone(&self, pids: &[i32]) -> Result<(bool, Duration)> {
        let t = Instant::now();
        if pids.is_empty() {
            return Ok((true, Duration::ZERO));
        }
        let analytic = self.stack.analytic_client().await?;
        loop {
            let left: i64 = analytic
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                    &[&pids],
                )
                .await?
                .get(0);
            if left == 0 || t.elapsed() >= Duration::from_secs(10) {
                return Ok((left == 0, t.elapsed()));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The state of the round's latest snapshot transmission.
    async fn round_snapshot_state(&self) -> Result<Option<String>> {
        let analytic = self.stack.analytic_client().await?;
        let row = analytic
            .query_opt(
                "SELECT state FROM transmissor.transmissions \
                 WHERE job = 'grande' AND id > $1 ORDER BY id DESC LIMIT 1",
                &[&self.round_tid],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    // ---- schema evolution --------------------------------------------------

    /// Changes the source's columns, then runs the agent while an analyst
    /// reads the target (and, one round in three, kills the collector).
    pub async fn schema_change(&mut self, n: u32) -> Result<Injected> {
        let change = source::plan_schema_change(&mut self.rng, n, &self.added_columns);
        let hold = Duration::from_millis(self.rng.random_range(500..=4000));
        let kill = self
            .rng
            .random_bool(1.0 / 3.0)
            .then(|| (self.point(0, 99), self.rng.random_range(0..1500u64)));
        let src = self.stack.source.connect(&self.m.db).await?;
        src.batch_execute(&change.sql())
            .await
            .with_context(|| format!("changing the source: {}", change.sql()))?;
        match &change {
            SchemaChange::Add { name, .. } => self.added_columns.push(name.clone()),
            SchemaChange::Drop { name } => self.added_columns.retain(|c| c != name),
        }

        // The analyst: an open read of the whole target, from the start of
        // the agent run for `hold`; it ends by itself on every path.
        let analyst = self.stack.analytic_client().await?;
        analyst.batch_execute("BEGIN").await?;
        let began: f64 = analyst
            .query_one(
                "SELECT extract(epoch FROM now())::float8 FROM (SELECT count(*) FROM analytic.grande) c",
                &[],
            )
            .await?
            .get(0);
        let watch = self.stack.analytic_client().await?;
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let analyst = tokio::spawn(async move {
            let waits = ddl_waits(&watch, hold).await;
            let _ = analyst.batch_execute("ROLLBACK").await;
            waits
        });
        let mut what = format!(
            "{}; analyst read held {} ms",
            change.describe(),
            hold.as_millis()
        );
        let mut at = None;
        if let Some((k, outage)) = kill {
            let reached = self.wait_mark(&mut agent, Mark::Held(k)).await?;
            at = Some(t.elapsed());
            let held = self.held().await.unwrap_or(-1);
            self.stack.kill_collector();
            tokio::time::sleep(Duration::from_millis(outage)).await;
            self.stack.start_collector().await?;
            what.push_str(&format!(
                "; collector killed at {held} batches held{}, down {outage} ms",
                late(reached)
            ));
        }
        match analyst.await {
            Ok(0) => what.push_str("; no ADD COLUMN waited behind it"),
            Ok(w) => what.push_str(&format!("; ADD COLUMN waited behind it {w}x")),
            Err(_) => {}
        }
        let mut injected = Injected::new(at, what, Some(agent));
        injected.schema = Some(SchemaRound {
            change,
            analyst_began: began,
            round: n,
        });
        Ok(injected)
    }
}

/// Watches, for `hold`, the collector's schema changes waiting for a lock
/// (behind the analyst); returns how many separate waits it saw (each
/// attempt waits `ddl_lock_timeout` at most, then gives way).
async fn ddl_waits(watch: &Client, hold: Duration) -> u32 {
    let until = Instant::now() + hold;
    let (mut waits, mut waiting) = (0, false);
    while Instant::now() < until {
        let now_waiting = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'transmissor-collector' \
                 AND wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE%'",
                &[],
            )
            .await
            .is_ok_and(|r| r.get::<_, i64>(0) > 0);
        if now_waiting && !waiting {
            waits += 1;
        }
        waiting = now_waiting;
        tokio::time::sleep(POLL).await;
    }
    waits
}

/// Releases a blocker, if any.
async fn release(blocker: Option<Blocker>) -> Result<()> {
    match blocker {
        Some(b) => b.release().await.context("releasing the blocker"),
        None => Ok(()),
    }
}

/// `transmissor_staging.t_<id>`, as the collector names it.
fn staging_table(id: i64) -> String {
    transmissor_collector::load::staging_table(id)
}

/// How often the collector refused a `Begin` as busy (the column addition
/// gave way to readers until `ddl_retry_for`), in round `n`'s agent logs in
/// `dir`: the faulted run's and its recovery runs'.
pub(super) fn busy_refusals(dir: &Path, n: u32) -> usize {
    let (faulted, recovery) = (format!("-r{n:02}.log"), format!("-r{n:02}-recovery"));
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = dir_name(p);
            name.starts_with("agent-") && (name.ends_with(&faulted) || name.contains(&recovery))
        })
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .matches("is busy")
                .count()
        })
        .sum()
}
