//! Personal data minimised at the edge (issue #13), end to end with the real
//! binaries, signed plans, PostgreSQL, TLS and gRPC:
//!
//! - pseudonymised columns arrive as HMAC-SHA256(agent key, clear text) —
//!   checked row by row against the key file and the source rows, in COPY
//!   text and in COPY binary — with a comment on the target column; dropped
//!   columns are absent; no clear value (pseudonymised or dropped) is in the
//!   spool, in the collector's database dump or in either process's log;
//!   two municipalities' pseudonyms of the same value differ;
//! - pseudonyms are stable across runs and across re-enrollment;
//! - a personal-data column without a policy, under its own name or computed
//!   from one under another (`upper(nu_cns) AS rotulo`), and a whole row
//!   (`row_to_json(c)`), are refused by `transmissor-plan sign`/`check`,
//!   and — in a plan signed without that check — by the agent before any
//!   row is extracted (on the described names, and on the SQL's lineage);
//! - a column switching from clear values to pseudonyms on an existing
//!   target is refused as a changed schema.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hmac::{KeyInit, Mac};

use transmissor_agent::pipeline::spool::{JobState, Spool};
use transmissor_tests::pg::wait_until;
use transmissor_tests::plans::{PlanKey, count};
use transmissor_tests::procs::{bin, outcome};
use transmissor_tests::stack::{ANALYTIC_DB, Municipality, Stack, StackOptions};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("3304557", "Rio de Janeiro");

/// Every clear value of a personal column carries this word, so one search
/// finds any of them in any encoding (raw, COPY-escaped, JSON).
const CLEAR: &str = "claro";
/// The dropped birth dates all fall in this month.
const BIRTH_MONTH: &str = "1901-07-";
const ROWS: i32 = 60;

const SOURCE_SQL: &str = "\
CREATE TABLE cidadaos (
    id integer PRIMARY KEY,
    nu_cpf_cidadao text,
    nu_cns varchar(40),
    no_cidadao text,
    no_nome_mae text,
    dt_nascimento date,
    nu_telefone_celular text,
    ds_observacao text
)";

const JOB_SQL: &str = "SELECT c.id, c.nu_cpf_cidadao, c.nu_cns, c.no_cidadao, c.no_nome_mae, \
     c.dt_nascimento, c.nu_telefone_celular, c.ds_observacao FROM cidadaos c";

const POLICIES: &str = "nu_cpf_cidadao = \"pseudonymise\"\nnu_cns = \"pseudonymise\"\n\
     no_cidadao = \"pseudonymise\"\nno_nome_mae = \"drop\"\ndt_nascimento = \"drop\"\n\
     nu_telefone_celular = \"drop\"\n";

/// One source row: (id, cpf, cns, name) — the pseudonymised columns.
type Row = (i32, Option<String>, Option<String>, Option<String>);

/// Values with tabs, backslashes, newlines, carriage returns, control
/// characters, unicode, a literal `\N`, and NULLs.
fn rows() -> Vec<Row> {
    (0..ROWS)
        .map(|i| {
            let cpf = (i % 7 != 3).then(|| format!("CPF{CLEAR}{i:03}\t\\x\nção\\\\t"));
            let cns = (i % 5 != 0).then(|| format!("CNS{CLEAR}{i:03} 名前 \\N\u{b}\u{8}"));
            let name = (i % 11 != 4).then(|| format!("NOME{CLEAR}{i:03} José\r\u{7}\\"));
            (i, cpf, cns, name)
        })
        .collect()
}

async fn load_source(stack: &Stack, m: &Municipality) -> Result<()> {
    let c = stack.source.connect(&m.db).await?;
    c.batch_execute(SOURCE_SQL).await?;
    for (id, cpf, cns, name) in rows() {
        c.execute(
            "INSERT INTO cidadaos VALUES ($1, $2, $3, $4, $5, DATE '1901-07-01' + ($1 % 28), $6, $7)",
            &[
                &id,
                &cpf,
                &cns,
                &name,
                &format!("MAE{CLEAR}{id:03}\t\\"),
                &format!("FONE{CLEAR}{id:03}"),
                &format!("observação {id}"),
            ],
        )
        .await?;
    }
    stack.grant_reader(&m.db).await
}

/// A plan text whose jobs are `(name, target, sql, [jobs.columns] lines)`.
fn plan(version: u64, personal_data: &str, jobs: &[(&str, &str, &str, &str)]) -> String {
    let mut s = format!(
        "format = 1\nversion = {version}\nissued_at = 2026-01-01T00:00:00Z\n\
         expires_at = 2099-01-01T00:00:00Z\nscope = \"all\"\n{personal_data}\n"
    );
    for (name, target, sql, columns) in jobs {
        s.push_str(&format!(
            "\n[[jobs]]\nname = \"{name}\"\ntarget = \"{target}\"\nmode = \"snapshot\"\n\
             sql = '''{sql}'''\nschedule = {{ cron = \"0 3 1 1 *\" }}\n"
        ));
        if !columns.is_empty() {
            s.push_str(&format!("[jobs.columns]\n{columns}"));
        }
    }
    s
}

fn central_config(stack: &Stack, m: &Municipality, key: &PlanKey, binary: bool) -> Result<PathBuf> {
    let cfg = stack.agent_config(m, &[], &format!("[plan]\nkeys = [\"{}\"]\n", key.public))?;
    if binary {
        let toml = std::fs::read_to_string(&cfg)?.replacen(
            "[source]\n",
            "[source]\ncopy_format = \"binary\"\n",
            1,
        );
        std::fs::write(&cfg, toml)?;
    }
    Ok(cfg)
}

/// `transmissor-agent run --now` with debug logging: (success, output).
fn run_agent(config: &Path) -> Result<(bool, String)> {
    let out = Command::new(bin("transmissor-agent")?)
        .args(["run", "--now", "--config"])
        .arg(config)
        .env("TRANSMISSOR_LOG", "debug")
        .output()?;
    Ok(outcome(&out))
}

fn state_dir(stack: &Stack, m: &Municipality) -> PathBuf {
    stack.dir.join(format!("agent-{}/state", m.ibge))
}

fn read_key(stack: &Stack, m: &Municipality) -> Result<Vec<u8>> {
    let path = state_dir(stack, m).join("pseudonym.key");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let text = text.trim();
    ensure!(text.len() == 64, "{}: not 64 hex digits", path.display());
    (0..32)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).context("hex"))
        .collect()
}

/// The expected pseudonym: lowercase hex HMAC-SHA256(key, clear text).
fn hmac_hex(key: &[u8], value: &str) -> String {
    let mut mac = hmac::Hmac::<sha2_hmac::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(value.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn expected(key: &[u8]) -> Vec<Row> {
    let p = |v: Option<String>| v.map(|v| hmac_hex(key, &v));
    rows()
        .into_iter()
        .map(|(id, cpf, cns, name)| (id, p(cpf), p(cns), p(name)))
        .collect()
}

async fn target_rows(stack: &Stack, target: &str, ibge: &str) -> Result<Vec<Row>> {
    let c = stack.analytic_client().await?;
    Ok(c.query(
        &format!(
            "SELECT id, nu_cpf_cidadao, nu_cns, no_cidadao FROM analytic.{target} \
             WHERE _ibge = $1 ORDER BY id"
        ),
        &[&ibge],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect())
}

/// Where `needle` occurs in `text` (a few characters around it), if it does.
fn find(text: &str, needle: &str) -> Option<String> {
    text.find(needle).map(|i| {
        let start = i.saturating_sub(80);
        let end = (i + needle.len() + 80).min(text.len());
        String::from_utf8_lossy(&text.as_bytes()[start..end]).into_owned()
    })
}

fn assert_no_clear(what: &str, text: &str) {
    for needle in [CLEAR, BIRTH_MONTH] {
        if let Some(around) = find(text, needle) {
            panic!("{what} holds a clear value ({needle:?}): …{around}…");
        }
    }
}

/// Extracts with the collector down, then reads the spool: every file, and
/// every batch decompressed. Returns the batches' raw bytes.
async fn spooled_while_collector_down(
    stack: &mut Stack,
    m: &Municipality,
    cfg: &Path,
) -> Result<String> {
    stack.kill_collector();
    let mut agent = stack.spawn_agent(cfg, "agent-spool.log")?;
    let spool_dir = state_dir(stack, m).join("spool");
    let done = wait_until(Duration::from_secs(60), || async {
        Spool::open(&spool_dir, u64::MAX)
            .and_then(|s| s.jobs())
            .map(|jobs| {
                jobs.iter()
                    .any(|j| matches!(j.state(), Ok(JobState::Done(_))))
            })
            .unwrap_or(false)
    })
    .await;
    if !done {
        bail!("extraction never finished:\n{}", agent.log_text());
    }
    let mut raw = String::new();
    let spool = Spool::open(&spool_dir, u64::MAX)?;
    for job in spool.jobs()? {
        let JobState::Done(meta) = job.state()? else {
            continue;
        };
        for seq in 1..=meta.batches {
            let b = job.read_batch(seq)?;
            let bytes = transmissor_proto::batch::decompress_checked(
                &b.frame,
                b.header.raw_len,
                b.header.crc32c,
                u64::MAX,
            )?;
            raw.push_str(&String::from_utf8_lossy(&bytes));
        }
        for f in std::fs::read_dir(job.path())? {
            let bytes = std::fs::read(f?.path())?;
            assert_no_clear("a spool file", &String::from_utf8_lossy(&bytes));
        }
        let job_json = std::fs::read_to_string(job.path().join("job.json"))?;
        ensure!(
            !job_json.contains("no_nome_mae") && job_json.contains("\"pseudonymised\": true"),
            "the spooled job declares the minimised columns: {job_json}"
        );
    }
    agent.kill();
    assert_no_clear("the interrupted agent's log", &agent.log_text());
    stack.start_collector().await?;
    Ok(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonymised_and_dropped_values_never_leave_in_clear() -> Result<()> {
    let plan_keys = tempfile::tempdir()?;
    let key = PlanKey::generate(plan_keys.path(), "k")?;
    let mut stack = Stack::with_options(
        &[A, B],
        StackOptions {
            plans_required: true,
            plans_extra: transmissor_tests::plans::collector_plan_keys(&[&key], None),
            ..Default::default()
        },
    )
    .await?;
    let (ma, mb) = (stack.munis[0].clone(), stack.munis[1].clone());
    load_source(&stack, &ma).await?;
    load_source(&stack, &mb).await?;
    stack.start_collector().await?;
    let dir = stack.dir.clone();
    let v1 = key.sign_plan(
        &dir,
        "v1",
        &plan(1, "", &[("cidadaos", "cidadaos", JOB_SQL, POLICIES)]),
    )?;
    stack.publish_plan("v1", &v1)?;
    stack.wait_served(&ma, &v1).await?;
    let cfg_a = central_config(&stack, &ma, &key, false)?;
    let cfg_b = central_config(&stack, &mb, &key, true)?;
    let mut logs = String::new();

    // A (COPY text): run, then the target holds exactly the HMACs.
    let (ok, out) = run_agent(&cfg_a)?;
    ensure!(ok, "{out}");
    logs.push_str(&out);
    let key_a = read_key(&stack, &ma)?;
    assert_eq!(
        target_rows(&stack, "cidadaos", ma.ibge.as_str()).await?,
        expected(&key_a)
    );

    // B (COPY binary), the same rows: the same HMACs under B's own key.
    let (ok, out) = run_agent(&cfg_b)?;
    ensure!(ok, "{out}");
    logs.push_str(&out);
    let key_b = read_key(&stack, &mb)?;
    assert_ne!(key_a, key_b, "each agent has its own key");
    let rows_b = target_rows(&stack, "cidadaos", mb.ibge.as_str()).await?;
    assert_eq!(rows_b, expected(&key_b));
    let c = stack.analytic_client().await?;
    let formats: Vec<(String, String)> = c
        .query(
            "SELECT ibge::text, copy_format FROM transmissor.transmissions \
             WHERE job = 'cidadaos' AND state = 'committed' ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        formats,
        [
            (mb.ibge.to_string(), "binary".to_string()),
            (ma.ibge.to_string(), "text".to_string())
        ]
    );
    // No pseudonym of A is one of B: no linkage across municipalities.
    let rows_a = target_rows(&stack, "cidadaos", ma.ibge.as_str()).await?;
    for (a, b) in rows_a.iter().zip(&rows_b) {
        if a.1.is_some() {
            assert_ne!(a.1, b.1);
        }
    }

    // The target: dropped columns absent, pseudonym columns text and
    // commented.
    let columns: Vec<(String, String, Option<String>)> = c
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
             col_description(a.attrelid, a.attnum) FROM pg_attribute a \
             WHERE a.attrelid = 'analytic.cidadaos'::regclass AND a.attnum > 0 \
             AND NOT a.attisdropped ORDER BY a.attnum",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let names: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "_ibge",
            "_transmission_id",
            "id",
            "nu_cpf_cidadao",
            "nu_cns",
            "no_cidadao",
            "ds_observacao"
        ]
    );
    for (name, ty, comment) in &columns {
        let pseudonym = ["nu_cpf_cidadao", "nu_cns", "no_cidadao"].contains(&name.as_str());
        if pseudonym {
            assert_eq!(ty, "text", "{name}");
            let comment = comment.as_deref().unwrap_or_default();
            assert!(
                comment.contains("HMAC-SHA256") && comment.contains("not reversible centrally"),
                "{name}: {comment:?}"
            );
        } else {
            assert_eq!(comment, &None, "{name}");
        }
    }
    let registry: i64 = count(
        &stack,
        "SELECT count(*) FROM transmissor.target_columns WHERE target = 'cidadaos' AND pseudonymised",
    )
    .await?;
    assert_eq!(registry, 3);

    // The spool: extracted with the collector down, read, then sent.
    let spooled = spooled_while_collector_down(&mut stack, &ma, &cfg_a).await?;
    assert_no_clear("the spool's batches", &spooled);
    let some = expected(&key_a)
        .into_iter()
        .find_map(|r| r.1)
        .context("a CPF")?;
    assert!(
        spooled.contains(&some),
        "the spooled batches hold the pseudonyms"
    );
    let (ok, out) = run_agent(&cfg_a)?;
    ensure!(ok, "the spooled transmission is sent: {out}");
    logs.push_str(&out);
    assert_eq!(
        target_rows(&stack, "cidadaos", ma.ibge.as_str()).await?,
        expected(&key_a),
        "the same pseudonyms again"
    );

    // The collector's whole database, and both sides' logs.
    let dump = stack
        .analytic
        .pg_dump_command(ANALYTIC_DB)
        .output()
        .context("pg_dump")?;
    ensure!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    ensure!(
        dump.contains(&some) && dump.contains("transmissor.transmissions"),
        "the dump holds the analytic and control schemas"
    );
    assert_no_clear("the collector's database", &dump);
    assert_no_clear("the agents' logs", &logs);
    stack.stop_collector().await?;
    let collector_log = std::fs::read_to_string(stack.dir.join("collector.log"))?;
    ensure!(
        collector_log.contains("transmission opened"),
        "the collector's log"
    );
    assert_no_clear("the collector's log", &collector_log);
    Ok(())
}

/// The target's pseudonyms of one municipality, by id.
async fn pseudonyms(stack: &Stack, m: &Municipality) -> Result<Vec<Row>> {
    target_rows(stack, "cidadaos", m.ibge.as_str()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonyms_are_stable_across_runs_and_reenrollment() -> Result<()> {
    let plan_keys = tempfile::tempdir()?;
    let key = PlanKey::generate(plan_keys.path(), "k")?;
    let mut stack = Stack::with_options(
        &[A],
        StackOptions {
            plans_required: true,
            plans_extra: transmissor_tests::plans::collector_plan_keys(&[&key], None),
            enrollment: true,
            ..Default::default()
        },
    )
    .await?;
    let m = stack.munis[0].clone();
    load_source(&stack, &m).await?;
    stack.start_collector().await?;
    // The development certificate's agent, only to see the plan served.
    let pool = stack.collector_pool().await?;
    transmissor_collector::registry::add_agent(&pool, m.ibge, m.agent_id).await?;
    let dir = stack.dir.clone();
    let v1 = key.sign_plan(
        &dir,
        "v1",
        &plan(1, "", &[("cidadaos", "cidadaos", JOB_SQL, POLICIES)]),
    )?;
    stack.publish_plan("v1", &v1)?;
    stack.wait_served(&m, &v1).await?;

    let cfg =
        stack.enrolled_agent_config(&m, &[], &format!("[plan]\nkeys = [\"{}\"]\n", key.public))?;
    stack.enroll_agent(&m, &cfg).await?;
    let agent_json = state_dir(&stack, &m).join("identity/agent.json");
    let first_identity = std::fs::read_to_string(&agent_json)?;

    // Two runs: the same pseudonyms, those of the key file.
    let (ok, out) = run_agent(&cfg)?;
    ensure!(ok, "{out}");
    let key_bytes = read_key(&stack, &m)?;
    let first = pseudonyms(&stack, &m).await?;
    assert_eq!(first, expected(&key_bytes));
    let (ok, out) = run_agent(&cfg)?;
    ensure!(ok, "{out}");
    assert_eq!(pseudonyms(&stack, &m).await?, first, "second run");

    // Enrolled again with a new token (a new agent id and key pair): the
    // pseudonym key is untouched and the pseudonyms are the same.
    let token = stack
        .issue_token(m.ibge.as_str(), Duration::from_secs(3600))
        .await?;
    let out = Command::new(bin("transmissor-agent")?)
        .args([
            "enroll",
            "--force",
            "--collector",
            &stack.endpoint(),
            "--config",
        ])
        .arg(&cfg)
        .env("TRANSMISSOR_ENROLL_TOKEN", &token)
        .output()?;
    let (ok, text) = outcome(&out);
    ensure!(ok, "re-enrollment: {text}");
    assert_ne!(
        std::fs::read_to_string(&agent_json)?,
        first_identity,
        "a new identity"
    );
    assert_eq!(read_key(&stack, &m)?, key_bytes, "the key survived");
    let (ok, out) = run_agent(&cfg)?;
    ensure!(ok, "{out}");
    assert_eq!(pseudonyms(&stack, &m).await?, first, "after re-enrollment");
    let agents: i64 = count(
        &stack,
        "SELECT count(DISTINCT agent_id) FROM transmissor.transmissions WHERE job = 'cidadaos' AND state = 'committed'",
    )
    .await?;
    assert_eq!(agents, 2, "the runs came from two identities");

    // Exported and imported on "another machine" (a fresh state directory),
    // the key is the same; the existing one is not replaced without asking.
    let exported = dir.join("exported.key");
    let out = Command::new(bin("transmissor-agent")?)
        .args(["pseudonym-key", "export", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&exported)
        .output()?;
    let (ok, text) = outcome(&out);
    ensure!(ok, "export: {text}");
    let other = dir.join("other.toml");
    let other_state = dir.join("other-state");
    std::fs::write(
        &other,
        std::fs::read_to_string(&cfg)?.replace(
            &format!("state_dir = \"{}\"", state_dir(&stack, &m).display()),
            &format!("state_dir = \"{}\"", other_state.display()),
        ),
    )?;
    let import = |replace: bool| -> Result<(bool, String)> {
        let mut cmd = Command::new(bin("transmissor-agent")?);
        cmd.args(["pseudonym-key", "import", "--config"])
            .arg(&other)
            .arg("--in")
            .arg(&exported);
        if replace {
            cmd.arg("--replace");
        }
        Ok(outcome(&cmd.output()?))
    };
    let (ok, text) = import(false)?;
    ensure!(ok && text.contains("installed"), "import: {text}");
    assert_eq!(
        std::fs::read(other_state.join("pseudonym.key"))?,
        std::fs::read(state_dir(&stack, &m).join("pseudonym.key"))?
    );
    std::fs::write(
        other_state.join("pseudonym.key"),
        format!("{}\n", "ab".repeat(32)),
    )?;
    let (ok, text) = import(false)?;
    ensure!(
        !ok && text.contains("already holds another pseudonym key"),
        "{text}"
    );
    let (ok, text) = import(true)?;
    ensure!(ok && text.contains("replaced"), "{text}");
    stack.stop_collector().await?;
    Ok(())
}

/// `transmissor-plan <command> …`: (success, output).
fn signer(args: &[&std::ffi::OsStr]) -> Result<(bool, String)> {
    Ok(outcome(
        &Command::new(bin("transmissor-plan")?).args(args).output()?,
    ))
}

/// The job's transmission as the collector recorded it: (state, error).
async fn recorded(stack: &Stack, job: &str) -> Result<Vec<(String, Option<String>)>> {
    let c = stack.analytic_client().await?;
    Ok(c.query(
        "SELECT state, error FROM transmissor.transmissions WHERE job = $1 ORDER BY id",
        &[&job],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

async fn table_exists(stack: &Stack, table: &str) -> Result<bool> {
    Ok(count(
        stack,
        &format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'analytic' AND tablename = '{table}'"
        ),
    )
    .await?
        > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclassified_personal_data_and_policy_switches_are_refused() -> Result<()> {
    let plan_keys = tempfile::tempdir()?;
    let key = PlanKey::generate(plan_keys.path(), "k")?;
    let mut stack = Stack::with_options(
        &[A],
        StackOptions {
            plans_required: true,
            plans_extra: transmissor_tests::plans::collector_plan_keys(&[&key], None),
            ..Default::default()
        },
    )
    .await?;
    let m = stack.munis[0].clone();
    load_source(&stack, &m).await?;
    stack.start_collector().await?;
    let dir = stack.dir.clone();
    let cfg = central_config(&stack, &m, &key, false)?;

    // The signer refuses a personal-data column without a policy, a *
    // it cannot see through, and personal data under another name.
    let unclassified = "SELECT c.id, c.nu_cpf_cidadao FROM cidadaos c";
    let renamed = "SELECT c.id, upper(c.nu_cns) AS rotulo FROM cidadaos c";
    for (sql, message) in [
        (
            unclassified,
            "job sem_politica: column nu_cpf_cidadao is personal data (CPF) and has no policy",
        ),
        (
            renamed,
            "job sem_politica: column rotulo is computed from nu_cns, personal data (CNS), by `upper(c.nu_cns)`, and has no policy",
        ),
        (
            "SELECT c.id, (SELECT c.nu_cns) FROM cidadaos c",
            "job sem_politica: column nu_cns is personal data (CNS) and has no policy",
        ),
        (
            "SELECT row_to_json(c)::text AS dados FROM cidadaos c",
            "job sem_politica: column dados (`row_to_json(c)::TEXT`) may carry personal data that the SQL does not show: `c` reads whole rows of table cidadaos",
        ),
        (
            "SELECT * FROM cidadaos",
            "it selects * over table cidadaos, whose columns cannot be known without the database; name the columns",
        ),
    ] {
        let file = dir.join("unclassified.toml");
        std::fs::write(
            &file,
            plan(2, "", &[("sem_politica", "sem_politica", sql, "")]),
        )?;
        let out_file = dir.join("unclassified.signed");
        for args in [
            vec!["check".as_ref(), file.as_os_str()],
            vec![
                "sign".as_ref(),
                "--key".as_ref(),
                key.file.as_os_str(),
                file.as_os_str(),
                "--out".as_ref(),
                out_file.as_os_str(),
            ],
        ] {
            let (ok, text) = signer(&args)?;
            ensure!(!ok && text.contains(message), "{args:?}: {text}");
        }
        ensure!(!out_file.exists(), "nothing was signed");
    }
    // A plan's own pattern counts too.
    let file = dir.join("pis.toml");
    std::fs::write(
        &file,
        plan(
            2,
            "personal_data = [\"ds_obs*\"]",
            &[("obs", "obs", "SELECT id, ds_observacao FROM cidadaos", "")],
        ),
    )?;
    let (ok, text) = signer(&["check".as_ref(), file.as_os_str()])?;
    ensure!(
        !ok && text.contains("column ds_observacao is personal data (listed by the plan)"),
        "{text}"
    );

    // Signed by a path that skips the check (the library's low-level
    // sign): the agent checks the names the database describes (a scalar
    // subquery is named after its column), before any row is read.
    let signing = transmissor_plan::keys::read_signing_key(&key.file)?;
    let bypass_sign = |text: &str| {
        transmissor_plan::sign(transmissor_plan::Kind::Plan, text.as_bytes(), &signing)
    };
    let hidden = bypass_sign(&plan(
        2,
        "",
        &[(
            "escondida",
            "escondida",
            "SELECT c.id, (SELECT c.nu_cns) FROM cidadaos c",
            "",
        )],
    ));
    stack.publish_plan("hidden", &hidden)?;
    stack.wait_served(&m, &hidden).await?;
    let (ok, out) = run_agent(&cfg)?;
    let refusal = "column nu_cns is personal data (CNS) and the plan gives it no policy";
    ensure!(!ok && out.contains(refusal), "{out}");
    ensure!(!table_exists(&stack, "escondida").await?, "nothing loaded");
    let rec = recorded(&stack, "escondida").await?;
    ensure!(
        rec.len() == 1
            && rec[0].0 == "failed"
            && rec[0].1.as_deref().unwrap_or("").contains(refusal),
        "{rec:?}"
    );

    // And a personal-data column under its own name, the same way.
    let bypass = bypass_sign(&plan(
        3,
        "",
        &[("sem_politica", "sem_politica", unclassified, "")],
    ));
    stack.publish_plan("bypass", &bypass)?;
    stack.wait_served(&m, &bypass).await?;
    let (ok, out) = run_agent(&cfg)?;
    let refusal = "column nu_cpf_cidadao is personal data (CPF) and the plan gives it no policy";
    ensure!(!ok && out.contains(refusal), "{out}");
    ensure!(
        !table_exists(&stack, "sem_politica").await?,
        "nothing loaded"
    );
    let rec = recorded(&stack, "sem_politica").await?;
    ensure!(
        rec.len() == 1
            && rec[0].0 == "failed"
            && rec[0].1.as_deref().unwrap_or("").contains(refusal),
        "{rec:?}"
    );

    // Personal data under another name: the agent runs the signer's
    // lineage check on the SQL again, and refuses before any row is read.
    let lineage = bypass_sign(&plan(4, "", &[("rotulo", "rotulo", renamed, "")]));
    stack.publish_plan("lineage", &lineage)?;
    stack.wait_served(&m, &lineage).await?;
    let (ok, out) = run_agent(&cfg)?;
    let refusal = "column rotulo is computed from nu_cns, personal data (CNS), by `upper(c.nu_cns)`, and the plan gives it no policy";
    ensure!(!ok && out.contains(refusal), "{out}");
    ensure!(!table_exists(&stack, "rotulo").await?, "nothing loaded");
    let rec = recorded(&stack, "rotulo").await?;
    ensure!(
        rec.len() == 1
            && rec[0].0 == "failed"
            && rec[0].1.as_deref().unwrap_or("").contains(refusal),
        "{rec:?}"
    );

    // A column sent in clear, then pseudonymised into the same target:
    // refused as a changed schema; the target keeps what it had.
    let troca = "SELECT c.id, c.nu_cns FROM cidadaos c";
    let v4 = key.sign_plan(
        &dir,
        "v4",
        &plan(5, "", &[("troca", "troca", troca, "nu_cns = \"send\"\n")]),
    )?;
    stack.publish_plan("v4", &v4)?;
    stack.wait_served(&m, &v4).await?;
    let (ok, out) = run_agent(&cfg)?;
    ensure!(ok, "{out}");
    let clear_rows = "SELECT count(*) FROM analytic.troca WHERE nu_cns LIKE 'CNSclaro%'";
    let before = count(&stack, clear_rows).await?;
    assert_eq!(before, i64::from(ROWS - ROWS / 5));
    let v5 = key.sign_plan(
        &dir,
        "v5",
        &plan(
            6,
            "",
            &[("troca", "troca", troca, "nu_cns = \"pseudonymise\"\n")],
        ),
    )?;
    stack.publish_plan("v5", &v5)?;
    stack.wait_served(&m, &v5).await?;
    let (ok, out) = run_agent(&cfg)?;
    let changed = "schema of target troca changed: column nu_cns holds values in clear in the target but pseudonyms in this transmission";
    ensure!(!ok && out.contains(changed), "{out}");
    let rec = recorded(&stack, "troca").await?;
    ensure!(
        rec.len() == 2
            && rec[0].0 == "committed"
            && rec[1].0 == "failed"
            && rec[1].1.as_deref().unwrap_or("").contains(changed),
        "{rec:?}"
    );
    assert_eq!(count(&stack, clear_rows).await?, before, "target unchanged");
    assert_eq!(
        count(&stack, "SELECT count(*) FROM analytic.troca").await?,
        i64::from(ROWS)
    );
    stack.stop_collector().await?;
    Ok(())
}
