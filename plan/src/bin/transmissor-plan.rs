//! `transmissor-plan`: the central team's offline signer. It creates the
//! signing key, checks and signs plans and key lists, and verifies signed
//! files. It never talks to the network; run it on the signing machine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use transmissor_plan::keys::{KeyRole, generate_signing_key, read_key, write_key};
use transmissor_plan::plan::rfc3339;
use transmissor_plan::{
    Envelope, KeyList, Kind, Plan, PublicKey, Scope, TrustedKeys, check_personal_data,
    open_key_list, open_plan, sign,
};

#[derive(Parser)]
#[command(
    name = "transmissor-plan",
    version,
    about = "Offline signer for transmissor extraction plans and key lists (never uses the network)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a signing key file (mode 0600; never overwrites) and print its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// Make the root key, which signs key lists only (keep it offline,
        /// apart from the plan keys); without it, a plan key.
        #[arg(long)]
        root: bool,
    },
    /// Print the public key of a signing key file.
    Pubkey {
        #[arg(long)]
        key: PathBuf,
        /// The file is the root key.
        #[arg(long)]
        root: bool,
    },
    /// Validate a plan and print a summary; exit 1 with the line and field of the first error.
    Check { plan: PathBuf },
    /// Validate a plan, then sign it (an invalid plan is never signed).
    Sign {
        #[arg(long)]
        key: PathBuf,
        plan: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Validate a key list, then sign it with the root key.
    ///
    /// Agents accept a key list only when the root key pinned at install (or named
    /// by an earlier list) signed it, and then trust exactly the plan keys it lists.
    SignKeys {
        /// The root key file (`keygen --root`); a plan key is refused.
        #[arg(long)]
        key: PathBuf,
        keys: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a signed plan or key list against the given public keys.
    Verify {
        /// A trusted public key (`ed25519:...`); repeat for several.
        #[arg(long = "pubkey", required = true)]
        pubkeys: Vec<PublicKey>,
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("transmissor-plan: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out, root } => {
            let key = generate_signing_key()?;
            write_key(&out, &key, role(root))?;
            let public = PublicKey::from(&key);
            println!("{public}");
            println!("key id: {}", public.key_id());
        }
        Command::Pubkey { key, root } => {
            let public = PublicKey::from(&read_key(&key, role(root))?);
            println!("{public}");
            println!("key id: {}", public.key_id());
        }
        Command::Check { plan: path } => {
            let plan = load_plan(&path)?;
            print_plan(&plan);
            personal_data(&path, &plan)?;
        }
        Command::Sign { key, plan, out } => {
            let bytes = read(&plan)?;
            let parsed =
                Plan::parse(&bytes).with_context(|| format!("{} is invalid", plan.display()))?;
            personal_data(&plan, &parsed)?;
            if parsed.is_expired(chrono::Utc::now()) {
                eprintln!(
                    "warning: the plan expired at {}; agents will not run it",
                    rfc3339(parsed.expires_at)
                );
            }
            let key = read_key(&key, KeyRole::Plan)?;
            write(&out, &sign(Kind::Plan, &bytes, &key))?;
            println!(
                "signed plan version {} with key {} into {}",
                parsed.version,
                PublicKey::from(&key).key_id(),
                out.display()
            );
        }
        Command::SignKeys { key, keys, out } => {
            let bytes = read(&keys)?;
            let list =
                KeyList::parse(&bytes).with_context(|| format!("{} is invalid", keys.display()))?;
            let key = read_key(&key, KeyRole::Root)?;
            let signer = PublicKey::from(&key);
            if list.keys.contains(&signer) {
                bail!(
                    "{} lists the root key {} as a plan key: the root key signs key lists only",
                    keys.display(),
                    signer.key_id()
                );
            }
            if let Some(next) = list.root {
                eprintln!(
                    "note: this list moves the root to key {}: agents accept later lists only when signed by it",
                    next.key_id()
                );
            }
            write(&out, &sign(Kind::KeyList, &bytes, &key))?;
            println!(
                "signed key list serial {} with key {} into {}",
                list.serial,
                signer.key_id(),
                out.display()
            );
        }
        Command::Verify { pubkeys, file } => {
            let bytes = read(&file)?;
            let trusted: TrustedKeys = pubkeys.into_iter().collect();
            let kind = Envelope::parse(&bytes)
                .with_context(|| format!("{}", file.display()))?
                .kind;
            match kind {
                Kind::Plan => {
                    let v = open_plan(&bytes, &trusted)
                        .with_context(|| format!("{}", file.display()))?;
                    println!("kind: plan");
                    println!("key: {}", v.key_id);
                    println!("version: {}", v.plan.version);
                    println!("sha256: {}", hex::encode(v.sha256));
                }
                Kind::KeyList => {
                    let v = open_key_list(&bytes, &trusted)
                        .with_context(|| format!("{}", file.display()))?;
                    println!("kind: key-list");
                    println!("key: {}", v.key_id);
                    println!("serial: {}", v.key_list.serial);
                    println!("sha256: {}", hex::encode(v.sha256));
                    for k in &v.key_list.keys {
                        println!("trusts: {k} ({})", k.key_id());
                    }
                    if v.key_list.min_plan_version > 0 {
                        println!("min plan version: {}", v.key_list.min_plan_version);
                    }
                    if let Some(t) = v.key_list.min_plan_issued_at {
                        println!("min plan issued at: {}", rfc3339(t));
                    }
                    if let Some(r) = v.key_list.root {
                        println!("next root: {r} ({})", r.key_id());
                    }
                }
            }
        }
    }
    Ok(())
}

fn role(root: bool) -> KeyRole {
    if root { KeyRole::Root } else { KeyRole::Plan }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.is_dir() {
        bail!("{} is a directory", path.display());
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Every personal-data column of every job has a policy, and every policy
/// names a column the job returns; otherwise the plan is refused, listing
/// each problem (job, column, category).
fn personal_data(path: &Path, plan: &Plan) -> Result<()> {
    let problems = check_personal_data(plan);
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    bail!(
        "{} is refused: personal data without a policy (LGPD; see personal_data.toml and the plan's personal_data field):\n{}",
        path.display(),
        list.join("\n")
    )
}

fn load_plan(path: &Path) -> Result<Plan> {
    let bytes = read(path)?;
    Plan::parse(&bytes).with_context(|| format!("{} is invalid", path.display()))
}

fn print_plan(plan: &Plan) {
    println!("plan version {} (format {})", plan.version, plan.format);
    println!("issued:  {}", rfc3339(plan.issued_at));
    println!("expires: {}", rfc3339(plan.expires_at));
    match &plan.scope {
        Scope::All => println!("scope: all municipalities"),
        Scope::Municipalities(codes) => {
            let list: Vec<&str> = codes.iter().map(String::as_str).collect();
            println!("scope: {} municipalities: {}", codes.len(), list.join(", "));
        }
    }
    if let Some(d) = &plan.description {
        println!("description: {d}");
    }
    println!("jobs: {}", plan.jobs.len());
    for job in &plan.jobs {
        println!(
            "  {} -> {} ({}), {}{}",
            job.name,
            job.target,
            job.mode,
            job.schedule,
            job.pec_version
                .map(|r| format!(", PEC {r}"))
                .unwrap_or_default()
        );
        if let transmissor_plan::JobMode::Upsert(u) = &job.mode {
            println!(
                "      key ({}), watermark {}, lookback {}, reconcile {}",
                u.key.join(", "),
                u.watermark,
                humantime::format_duration(u.lookback),
                u.reconcile
                    .as_ref()
                    .map_or("only when the watermark is unknown".to_string(), |r| r
                        .to_string())
            );
        }
        for (column, policy) in &job.columns {
            println!("      {column}: {policy}");
        }
    }
}
