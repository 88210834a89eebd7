//! The campaign's state, one round from start to checks, recovery, and the
//! polled trigger points (see the parent module for the whole story).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use tokio_postgres::Client;

use transmissor_tests::pg::ClusterOptions;
use transmissor_tests::procs::Proc;
use transmissor_tests::proxy::Proxy;
use transmissor_tests::stack::{Job, Municipality, Stack, StackOptions};

use super::kinds::CommitPoint;
use super::reader::Reader;
use super::spool::{job_dirs, spooled_batches, tail};
use super::{FaultArgs, Kind, MAX_RUNS, RoundReport, source};

pub(super) const MUNICIPALITY: (&str, &str) = ("3550308", "São Paulo");
/// The snapshot job: every column, whatever the schema rounds did.
pub(super) const SNAPSHOT_QUERY: &str = "SELECT * FROM grande";
pub(super) const LIST_QUERY: &str = "SELECT id, payload FROM grande WHERE id % 10 = 0";
const SPOOL_TUNING: &str = "[spool]\nbatch_raw_bytes = \"16KiB\"\n";
/// A column addition gives way to readers for 2 s, then `Begin` answers
/// UNAVAILABLE and the agent retries it (the schema rounds' analyst holds
/// its read for up to 4 s, so both paths come up).
const COLLECTOR_TUNING: &str = "\n[load]\nddl_retry_for = \"2s\"\n";
/// One agent run (its retries give up after 120 s, see the harness config).
const RUN_TIMEOUT: Duration = Duration::from_secs(200);
/// Waiting for a fault's trigger point.
const MARK_TIMEOUT: Duration = Duration::from_secs(120);
pub(super) const POLL: Duration = Duration::from_millis(10);

/// A polled condition that marks when a fault strikes.
#[derive(Clone, Copy)]
pub(super) enum Mark {
    /// Batch files in the agent's spool.
    Spooled(u64),
    /// Batches the collector holds for open transmissions.
    Held(i64),
    /// The snapshot commit waits for a lock inside its transaction, at this
    /// point.
    CommitWaiting(CommitPoint),
}

/// The state at the start of a round.
pub(super) struct RoundStart {
    /// `(count, sum(id))` of the visible snapshot slice.
    pub visible: (i64, i64),
    /// The same of the source after this round's change.
    pub source: (i64, i64),
    /// Highest transmission id so far.
    pub max_tid: i64,
}

pub(super) struct Campaign {
    pub stack: Stack,
    pub m: Municipality,
    pub proxy: Proxy,
    pub rng: StdRng,
    reader: Reader,
    /// For polling the trigger points; reopened after a server restart.
    pub probe: Option<Client>,
    /// The snapshot job's last committed size: batches, compressed bytes.
    pub batches: i64,
    pub compressed: i64,
    /// Agent runs so far (names their logs).
    agent_runs: u32,
    /// Highest transmission id before the current round.
    pub round_tid: i64,
    /// Columns the schema rounds added to the source and it still has.
    pub added_columns: Vec<String>,
    /// The upsert job's committed watermark and newest snapshot so far.
    upsert_seen: super::upsert::Committed,
}

impl Campaign {
    pub async fn start(args: &FaultArgs, rng: StdRng) -> Result<Self> {
        let dir = args
            .dir
            .clone()
            .unwrap_or_else(|| crate::setup::workspace_root().join("target/fault"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        println!("==> starting PostgreSQL clusters, PKI, collector and proxy");
        println!(
            "    work directory (logs, configs, spool): {}",
            dir.display()
        );
        let opts = StackOptions {
            dir: Some(dir),
            cluster: ClusterOptions {
                extra: vec![("synchronous_commit".into(), "on".into())],
                ..Default::default()
            },
            collector_extra_toml: COLLECTOR_TUNING.into(),
            ..Default::default()
        };
        let mut stack = Stack::with_options(&[MUNICIPALITY], opts).await?;
        let m = stack.munis[0].clone();
        source::load_source(&stack, &m, args.rows).await?;
        stack.start_collector().await?;
        let proxy = Proxy::start(stack.collector_addr).await?;
        let mut c = Self {
            stack,
            m,
            proxy,
            rng,
            reader: Reader::idle(),
            probe: None,
            batches: 0,
            compressed: 0,
            agent_runs: 0,
            round_tid: 0,
            added_columns: Vec::new(),
            upsert_seen: None,
        };
        c.baseline().await?;
        c.reader = Reader::start(&c.stack, &c.m);
        Ok(c)
    }

    /// A first, undisturbed transmission: creates the targets and measures
    /// the snapshot job.
    async fn baseline(&mut self) -> Result<()> {
        let t = Instant::now();
        self.write_config(None)?;
        let mut agent = self.spawn_agent("baseline")?;
        let ok = wait_agent(&mut agent).await?;
        if !ok {
            bail!("the baseline run failed:\n{}", tail(&agent.log_text(), 30));
        }
        self.measure().await?;
        let mut problems = self.check_targets(0).await?;
        let mut seen = None;
        problems.extend(self.check_upsert(&mut seen).await?);
        self.upsert_seen = seen;
        if !problems.is_empty() {
            bail!("the baseline transmission is wrong: {problems:?}");
        }
        println!(
            "==> baseline transmission: {} snapshot batches, {} compressed bytes, {:.1} s",
            self.batches,
            self.compressed,
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The size of the last committed snapshot transmission (the source
    /// grows, and the schema rounds add columns).
    async fn measure(&mut self) -> Result<()> {
        let analytic = self.stack.analytic_client().await?;
        let r = analytic
            .query_one(
                "SELECT batches::int8, compressed_bytes FROM transmissor.transmissions \
                 WHERE job = 'grande' AND state = 'committed' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await?;
        (self.batches, self.compressed) = (r.get(0), r.get(1));
        Ok(())
    }

    pub async fn finish(mut self) -> Result<()> {
        self.reader.stop().await;
        self.stack.stop_collector().await
    }

    /// Runs one round; any error of the harness counts as a failed round.
    pub async fn round(&mut self, n: u32, kind: Kind) -> RoundReport {
        let t = Instant::now();
        let mut report = RoundReport {
            kind,
            strike: "-".into(),
            runs: None,
            problems: Vec::new(),
            secs: 0.0,
        };
        if let Err(e) = self.round_inner(n, kind, &mut report).await {
            report.problems.push(format!("{e:#}"));
        }
        report.secs = t.elapsed().as_secs_f64();
        report
    }

    async fn round_inner(&mut self, n: u32, kind: Kind, report: &mut RoundReport) -> Result<()> {
        let start = self.begin_round(n).await?;
        let injected = match kind {
            Kind::CollectorKill => self.collector_kill(n).await?,
            Kind::AgentKill => self.agent_kill(n).await?,
            Kind::AnalyticRestart => self.analytic_restart(n).await?,
            Kind::NetworkCut => self.network_cut(n).await?,
            Kind::SpoolFull => self.spool_full(n).await?,
            Kind::CorruptSpool => self.corrupt_spool(n).await?,
            Kind::CommitKill => self.commit_kill(n).await?,
            Kind::SchemaChange => self.schema_change(n).await?,
        };
        report.strike = injected.strike.describe();
        report.problems.extend(injected.problems);
        report.runs = Some(self.recover(n, injected.running).await?);
        if !self.stack.collector.as_mut().is_some_and(Proc::is_running) {
            report.problems.push("the collector process exited".into());
        }
        if let Some(run) = &injected.corrupted_run {
            report
                .problems
                .extend(self.check_corruption_noticed(run).await?);
        }
        if let Some(schema) = &injected.schema {
            let (note, problems) = self.check_schema_round(schema, start.max_tid).await?;
            report.strike.push_str(&note);
            report.problems.extend(problems);
        }
        report
            .problems
            .extend(self.check_targets(start.max_tid).await?);
        let mut seen = self.upsert_seen;
        report.problems.extend(self.check_upsert(&mut seen).await?);
        self.upsert_seen = seen;
        report.problems.extend(
            self.reader
                .check(&[start.visible, start.source], &self.stack)
                .await?,
        );
        self.measure().await?;
        Ok(())
    }

    /// Changes the source and tells the reader which snapshot states are
    /// allowed during the round.
    async fn begin_round(&mut self, n: u32) -> Result<RoundStart> {
        let analytic = self.stack.analytic_client().await?;
        let visible = super::checks::visible_slice(&analytic, &self.m).await?;
        let max_tid: i64 = analytic
            .query_one(
                "SELECT coalesce(max(id), 0) FROM transmissor.transmissions",
                &[],
            )
            .await?
            .get(0);
        let src = self.stack.source.connect(&self.m.db).await?;
        src.batch_execute(&source::mutation_sql(&mut self.rng, n))
            .await?;
        let source = source::source_state(&src).await?;
        self.round_tid = max_tid;
        self.reader.reset();
        Ok(RoundStart {
            visible,
            source,
            max_tid,
        })
    }

    // ---- recovery -----------------------------------------------------------

    /// Lets the run the fault hit finish, then runs the agent until a run
    /// exits 0 with an empty spool; returns how many runs that took after
    /// the faulted one.
    async fn recover(&mut self, n: u32, running: Option<Proc>) -> Result<u32> {
        if let Some(mut agent) = running
            && wait_agent(&mut agent).await?
            && job_dirs(&self.spool_dir()).is_empty()
        {
            return Ok(0);
        }
        for i in 1..=MAX_RUNS {
            let mut agent = self.spawn_agent(&format!("r{n:02}-recovery{i}"))?;
            if wait_agent(&mut agent).await? && job_dirs(&self.spool_dir()).is_empty() {
                return Ok(i);
            }
        }
        bail!(
            "the agent did not recover in {MAX_RUNS} runs; spool holds {:?}",
            job_dirs(&self.spool_dir())
        )
    }

    /// After a failed round: the link up, the collector running, the normal
    /// config, an empty spool and one clean run.
    pub async fn repair(&mut self) -> Result<()> {
        self.proxy.restore();
        let running = self.stack.collector.as_mut().is_some_and(Proc::is_running);
        if !running {
            self.stack.kill_collector();
            self.stack.start_collector().await?;
        }
        self.write_config(None)?;
        let spool = self.spool_dir();
        if spool.exists() {
            std::fs::remove_dir_all(&spool)?;
        }
        let mut agent = self.spawn_agent("repair")?;
        if !wait_agent(&mut agent).await? {
            bail!("the repair run failed:\n{}", tail(&agent.log_text(), 20));
        }
        self.measure().await
    }

    // ---- the agent ----------------------------------------------------------

    /// Writes the agent config (endpoint: the proxy), with a spool limit if given.
    pub fn write_config(&self, max_bytes: Option<i64>) -> Result<PathBuf> {
        let mut extra = SPOOL_TUNING.to_string();
        if let Some(b) = max_bytes {
            extra.push_str(&format!("max_bytes = {b}\n"));
        }
        let jobs = [
            Job::new("grande", "snapshot", "grande", SNAPSHOT_QUERY),
            Job::new("lista", "append", "grande_lista", LIST_QUERY),
            super::upsert::job(),
        ];
        let path = self.stack.agent_config(&self.m, &jobs, &extra)?;
        let text = std::fs::read_to_string(&path)?;
        let direct = format!("endpoint = \"{}\"", self.stack.endpoint());
        let proxied = format!(
            "endpoint = \"https://127.0.0.1:{}\"\nserver_name = \"localhost\"",
            self.proxy.addr.port()
        );
        if !text.contains(&direct) {
            bail!("the agent config has no line {direct}");
        }
        std::fs::write(&path, text.replace(&direct, &proxied))?;
        Ok(path)
    }

    fn agent_dir(&self) -> PathBuf {
        self.stack.dir.join(format!("agent-{}", self.m.ibge))
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.agent_dir().join("state/spool")
    }

    pub fn spawn_agent(&mut self, tag: &str) -> Result<Proc> {
        self.agent_runs += 1;
        let log = format!("agent-{:03}-{tag}.log", self.agent_runs);
        let config = self.agent_dir().join("agent.toml");
        self.stack.spawn_agent(&config, &log)
    }

    // ---- trigger points -----------------------------------------------------

    /// Polls until `mark` is reached (true) or the agent exits first
    /// (false: the fault then strikes late); bounded by [`MARK_TIMEOUT`].
    pub async fn wait_mark(&mut self, agent: &mut Proc, mark: Mark) -> Result<bool> {
        let deadline = Instant::now() + MARK_TIMEOUT;
        while Instant::now() < deadline {
            if self.reached(mark).await {
                return Ok(true);
            }
            if !agent.is_running() {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
        bail!(
            "the fault's trigger point was not reached in {MARK_TIMEOUT:?} (agent log {})",
            agent.log.display()
        )
    }

    async fn reached(&mut self, mark: Mark) -> bool {
        match mark {
            Mark::Spooled(k) => spooled_batches(&self.spool_dir()) >= k,
            Mark::Held(k) => self.held().await.is_some_and(|h| h >= k),
            Mark::CommitWaiting(point) => {
                let sql = format!(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE application_name = 'transmissor-collector' \
                     AND wait_event_type = 'Lock' AND query LIKE '{}'",
                    point.query_pattern()
                );
                self.probe_i64(&sql).await.is_some_and(|w| w > 0)
            }
        }
    }

    /// Polls (bounded) until the round's snapshot transmission is open, or
    /// the agent exits first (None).
    pub async fn wait_snapshot_open(&mut self, agent: &mut Proc) -> Result<Option<i64>> {
        let deadline = Instant::now() + MARK_TIMEOUT;
        let sql = format!(
            "SELECT coalesce(max(id), 0) FROM transmissor.transmissions \
             WHERE job = 'grande' AND state = 'open' AND id > {}",
            self.round_tid
        );
        while Instant::now() < deadline {
            if let Some(id) = self.probe_i64(&sql).await
                && id > 0
            {
                return Ok(Some(id));
            }
            if !agent.is_running() {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
        bail!(
            "the snapshot transmission was not opened in {MARK_TIMEOUT:?} (agent log {})",
            agent.log.display()
        )
    }

    /// Batches held for open transmissions.
    pub async fn held(&mut self) -> Option<i64> {
        self.probe_i64(
            "SELECT count(*) FROM transmissor.batches b JOIN transmissor.transmissions t \
             ON t.id = b.transmission_id WHERE t.state = 'open'",
        )
        .await
    }

    async fn probe_i64(&mut self, sql: &str) -> Option<i64> {
        if self.probe.is_none() {
            self.probe = self.stack.analytic_client().await.ok();
        }
        let r = self.probe.as_ref()?.query_one(sql, &[]).await;
        match r {
            Ok(row) => Some(row.get(0)),
            Err(_) => {
                self.probe = None;
                None
            }
        }
    }
}

/// Waits for an agent run (bounded); true when it exited 0.
pub(super) async fn wait_agent(agent: &mut Proc) -> Result<bool> {
    match agent.wait(RUN_TIMEOUT).await {
        Ok(status) => Ok(status.success()),
        Err(_) => {
            agent.kill();
            bail!(
                "agent run did not end within {RUN_TIMEOUT:?}; log {}:\n{}",
                agent.log.display(),
                tail(&agent.log_text(), 20)
            )
        }
    }
}

pub(super) fn late(reached: bool) -> &'static str {
    if reached { "" } else { " (agent had exited)" }
}
