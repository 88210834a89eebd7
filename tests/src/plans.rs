//! Signed plans in tests: keys and signatures made with the real offline
//! signer (`transmissor-plan`), publication with the real collector CLI, and
//! — to play a compromised collector — envelopes written straight into the
//! collector's tables, which it then serves as if it had published them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;

use crate::stack::{Municipality, Stack};

/// A signing key made by `transmissor-plan keygen`.
#[derive(Debug, Clone)]
pub struct PlanKey {
    pub file: PathBuf,
    /// `ed25519:…`
    pub public: String,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {text}", out.status);
    }
    Ok(text)
}

fn signer() -> Result<Command> {
    Ok(Command::new(crate::procs::bin("transmissor-plan")?))
}

impl PlanKey {
    /// A plan signing key (`keygen`).
    pub fn generate(dir: &Path, name: &str) -> Result<Self> {
        Self::generate_as(dir, name, &[])
    }

    /// The root key (`keygen --root`): it signs key lists only.
    pub fn generate_root(dir: &Path, name: &str) -> Result<Self> {
        Self::generate_as(dir, name, &["--root"])
    }

    fn generate_as(dir: &Path, name: &str, role: &[&str]) -> Result<Self> {
        let file = dir.join(format!("{name}.key"));
        run(signer()?.arg("keygen").args(role).arg("--out").arg(&file))?;
        let public = run(signer()?.arg("pubkey").args(role).arg("--key").arg(&file))?
            .lines()
            .find_map(|l| l.split_whitespace().find(|w| w.starts_with("ed25519:")))
            .context("no public key printed")?
            .to_string();
        Ok(Self { file, public })
    }

    /// Signs a plan text; returns the envelope.
    pub fn sign_plan(&self, dir: &Path, name: &str, plan: &str) -> Result<Vec<u8>> {
        self.sign_with("sign", dir, name, plan)
    }

    /// Signs (with this root key) a key list moving trust to `keys`.
    pub fn sign_key_list(&self, dir: &Path, serial: u64, keys: &[&PlanKey]) -> Result<Vec<u8>> {
        self.sign_key_list_with(dir, serial, keys, "")
    }

    /// Like [`Self::sign_key_list`], with `extra` lines (e.g. a floor).
    pub fn sign_key_list_with(
        &self,
        dir: &Path,
        serial: u64,
        keys: &[&PlanKey],
        extra: &str,
    ) -> Result<Vec<u8>> {
        self.sign_with(
            "sign-keys",
            dir,
            &format!("keys-{serial}"),
            &key_list_toml(serial, keys, extra),
        )
    }

    /// `transmissor-plan <command> --key K NAME.toml --out NAME.signed`.
    fn sign_with(&self, command: &str, dir: &Path, name: &str, text: &str) -> Result<Vec<u8>> {
        let toml = dir.join(format!("{name}.toml"));
        let out = dir.join(format!("{name}.signed"));
        std::fs::write(&toml, text)?;
        run(signer()?
            .arg(command)
            .arg("--key")
            .arg(&self.file)
            .arg(&toml)
            .arg("--out")
            .arg(&out))?;
        Ok(std::fs::read(out)?)
    }
}

/// A key-list text trusting `keys`, with `extra` lines.
pub fn key_list_toml(serial: u64, keys: &[&PlanKey], extra: &str) -> String {
    let list: Vec<String> = keys.iter().map(|k| format!("\"{}\"", k.public)).collect();
    format!(
        "format = 1\nserial = {serial}\nissued_at = 2026-11-30T12:00:00Z\nkeys = [{}]\n{extra}",
        list.join(", ")
    )
}

/// Lines for the collector's `[plans]` section (`StackOptions::plans_extra`)
/// pinning the central team's plan keys and, when given, the root key: a
/// collector that serves plans requires them.
pub fn collector_plan_keys(keys: &[&PlanKey], root: Option<&PlanKey>) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{}\"", k.public)).collect();
    let mut s = format!("keys = [{}]\n", keys.join(", "));
    if let Some(r) = root {
        s.push_str(&format!("root_key = \"{}\"\n", r.public));
    }
    s
}

/// An agent's `[plan]` section pinning `keys` and, when given, the root key.
pub fn agent_plan_section(keys: &[&PlanKey], root: Option<&PlanKey>) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{}\"", k.public)).collect();
    let mut s = format!("[plan]\nkeys = [{}]\n", keys.join(", "));
    if let Some(r) = root {
        s.push_str(&format!("root_key = \"{}\"\n", r.public));
    }
    s
}

/// One job of a test plan.
pub struct PlanJob<'a> {
    pub name: &'a str,
    pub target: &'a str,
    pub mode: &'a str,
    pub sql: &'a str,
    pub cron: &'a str,
    /// e.g. `{ min = "5.5" }`
    pub pec: Option<&'a str>,
}

/// An expiry far enough away for any test.
pub const LATER: &str = "2099-01-01T00:00:00Z";

/// A snapshot job over the teams dimension (no personal data), weekdays.
pub const EQUIPES: PlanJob<'static> = PlanJob {
    name: "equipes",
    target: "plan_equipes",
    mode: "snapshot",
    sql: "SELECT co_seq_dim_equipe, nu_ine, no_equipe, st_registro_valido, ds_filtro FROM tb_dim_equipe",
    cron: "30 2 * * 1-5",
    pec: None,
};

/// A plan text: `scope` is `"all"` or a TOML list; `expires` an RFC 3339 time.
pub fn plan_toml(
    version: u64,
    scope: &str,
    expires: &str,
    note: &str,
    jobs: &[PlanJob<'_>],
) -> String {
    let mut s = format!(
        "format = 1\nversion = {version}\nissued_at = 2026-01-01T00:00:00Z\nexpires_at = {expires}\n\
         scope = {scope}\ndescription = \"{note}\"\n"
    );
    for j in jobs {
        s.push_str(&format!(
            "\n[[jobs]]\nname = \"{}\"\ntarget = \"{}\"\nmode = \"{}\"\nsql = '''{}'''\n\
             schedule = {{ cron = \"{}\", jitter = \"10m\" }}\n",
            j.name, j.target, j.mode, j.sql, j.cron
        ));
        if let Some(p) = j.pec {
            s.push_str(&format!("pec_version = {p}\n"));
        }
    }
    s
}

impl Stack {
    /// Plays a compromised collector: `envelope` is written straight into
    /// the collector's key-list table with `serial`, beside what was
    /// published (the collector serves it; agents judge it).
    pub async fn serve_raw_key_list(&self, serial: i64, envelope: &[u8]) -> Result<()> {
        let c = self.analytic_client().await?;
        c.execute(
            "INSERT INTO transmissor.plan_key_lists (serial, envelope, key_id, published_by) \
             VALUES ($1, $2, 'forged', 'test')",
            &[&serial, &envelope],
        )
        .await?;
        Ok(())
    }

    /// `transmissor-collector plan publish`; returns what it printed.
    pub fn publish_plan(&self, name: &str, envelope: &[u8]) -> Result<String> {
        let file = self.dir.join(format!("{name}.publish"));
        std::fs::write(&file, envelope)?;
        run(Command::new(crate::procs::bin("transmissor-collector")?)
            .args(["plan", "publish", "--config"])
            .arg(&self.collector_config)
            .arg(&file))
    }

    /// Plays a compromised collector: `envelope` is written straight into
    /// the collector's table, as the newest plan for every municipality
    /// (whatever version it claims inside), beside what was published.
    pub async fn serve_raw_plan(&self, envelope: &[u8]) -> Result<()> {
        let c = self.analytic_client().await?;
        let mut forged_hash = Sha256::digest(envelope).to_vec();
        forged_hash.extend_from_slice(b"forged");
        c.execute(
            "INSERT INTO transmissor.plans (version, envelope, sha256, key_id, scope_all, issued_at, \
             expires_at, published_by) \
             SELECT coalesce(max(version), 0) + 1, $1, $2, 'forged', true, now(), now(), 'test' \
             FROM transmissor.plans",
            &[&envelope, &forged_hash],
        )
        .await?;
        Ok(())
    }

    /// Waits until the collector serves `envelope` to `m` (its plan cache
    /// refreshes every second in tests).
    pub async fn wait_served(&self, m: &Municipality, envelope: &[u8]) -> Result<()> {
        let channel = crate::client::channel(
            &self.endpoint(),
            &self.server_trust,
            Some((&m.cert, &m.key)),
        )?;
        let client = AgentLifecycleClient::new(channel).max_decoding_message_size(16 << 20);
        let served = crate::pg::wait_until(Duration::from_secs(30), || {
            let mut client = client.clone();
            async move {
                client
                    .fetch_plan(pb::FetchPlanRequest { key_list_serial: 0 })
                    .await
                    .map(|r| r.into_inner().plan == envelope)
                    .unwrap_or(false)
            }
        })
        .await;
        if !served {
            bail!("the collector did not serve the expected plan within 30 s");
        }
        Ok(())
    }

    /// What an agent's latest heartbeat reported about plans, once it has
    /// been written: (plan_version, plan_refusal, pec_version, key_list_serial).
    pub async fn agent_plan_state(
        &self,
        m: &Municipality,
        until: impl Fn(&AgentPlanState) -> bool,
    ) -> Result<AgentPlanState> {
        let c = self.analytic_client().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = AgentPlanState::default();
        while tokio::time::Instant::now() < deadline {
            if let Ok(r) = c
                .query_one(
                    "SELECT plan_version, plan_refusal, pec_version, key_list_serial, job_source, \
                     plan_expired, next_runs::text FROM transmissor.agents WHERE id = $1",
                    &[&m.agent_id],
                )
                .await
            {
                last = AgentPlanState {
                    plan_version: r.get(0),
                    plan_refusal: r.get(1),
                    pec_version: r.get(2),
                    key_list_serial: r.get(3),
                    job_source: r.get(4),
                    plan_expired: r.get(5),
                    next_runs: r.get(6),
                };
                if until(&last) {
                    return Ok(last);
                }
            }
            // Heartbeats are written once a second.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the agent's reported plan state never matched; last: {last:?}")
    }
}

/// An agent's plan state as the collector stored it.
#[derive(Debug, Clone, Default)]
pub struct AgentPlanState {
    pub plan_version: Option<i64>,
    pub plan_refusal: Option<String>,
    pub pec_version: Option<String>,
    pub key_list_serial: Option<i64>,
    pub job_source: Option<String>,
    pub plan_expired: Option<bool>,
    pub next_runs: Option<String>,
}

/// `transmissor-agent run --now [--job J]`: (success, output).
pub fn run_now(config: &Path, jobs: &[&str]) -> Result<(bool, String)> {
    let mut cmd = Command::new(crate::procs::bin("transmissor-agent")?);
    cmd.args(["run", "--now", "--config"]).arg(config);
    for j in jobs {
        cmd.args(["--job", j]);
    }
    let out = cmd.output()?;
    Ok(crate::procs::outcome(&out))
}

/// `transmissor-agent run` (the service) for a config.
pub fn spawn_service(config: &Path, log: &Path) -> Result<crate::procs::Proc> {
    let cfg = config.display().to_string();
    crate::procs::Proc::spawn("transmissor-agent", ["run", "--config", &cfg], &[], log)
}

/// Waits until the process's log contains `needle`.
pub async fn wait_log(p: &crate::procs::Proc, needle: &str) -> Result<()> {
    if !crate::pg::wait_until(Duration::from_secs(60), || async {
        p.log_text().contains(needle)
    })
    .await
    {
        anyhow::bail!("{needle:?} never logged:\n{}", p.log_text());
    }
    Ok(())
}

/// One number from the analytic database (`SELECT count(*) …`).
pub async fn count(stack: &Stack, sql: &str) -> Result<i64> {
    Ok(stack
        .analytic_client()
        .await?
        .query_one(sql, &[])
        .await?
        .get(0))
}
