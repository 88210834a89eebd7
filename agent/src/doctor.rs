//! `transmissor-agent doctor`: the preflight checklist municipal IT runs
//! after installing (and the installer runs for them). Each item passes,
//! warns or fails with a one-line fix, in Portuguese or English; the exit
//! code is the worst result; `--json` for machines. The summary is kept for
//! the next heartbeat, so the central team sees it too.
//!
//! | module           | responsibility                                               |
//! |------------------|--------------------------------------------------------------|
//! | [`item`]         | the checks, their outcomes, one line of the checklist        |
//! | [`finding`]      | what a check found: its outcome and stable code               |
//! | [`message`]      | the sentence saying it, in Portuguese and English            |
//! | [`fix`]          | what to do about it, in Portuguese and English               |
//! | [`lang`]         | Portuguese or English, from the locale or `--lang`           |
//! | [`database`]     | reachable, version, PEC version, the plan's tables readable   |
//! | [`write_access`] | everything the source role could write, and the SQL that fixes it |
//! | [`collector`]    | the certificate, the collector over mTLS and its pin, the clock |
//! | [`local`]        | the running plan; the spool writable with room               |
//! | [`service`]      | the service installed, enabled, running; systemd's version    |
//! | [`role_sql`]     | the read-only role the plan needs, printed or applied once    |
//! | [`report`]       | text, JSON, exit code, the summary for the heartbeat          |

pub mod collector;
pub mod database;
pub mod finding;
pub mod fix;
pub mod item;
pub mod lang;
pub mod local;
pub mod message;
pub mod report;
pub mod role_sql;
pub mod service;
pub mod sql_name;
pub mod write_access;

use std::collections::BTreeSet;
use std::path::Path;

use chrono::Utc;

use crate::config::AgentConfig;

pub use finding::Finding;
pub use fix::FixContext;
pub use item::{Check, Item, Outcome};
pub use lang::Lang;
pub use report::Report;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Checks not to run (reported as skipped).
    pub skip: BTreeSet<Check>,
    /// The service's name.
    pub service: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            skip: BTreeSet::new(),
            service: service::SERVICE_NAME.to_string(),
        }
    }
}

/// Runs the checklist for the config at `path`.
pub async fn run(path: &Path, opts: &Options) -> Report {
    let now = Utc::now();
    let fix = FixContext {
        config: path.to_path_buf(),
        service: service::how_to_see(&opts.service),
    };
    let cfg = match AgentConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            let mut items = vec![Item::new(
                Check::Config,
                Finding::ConfigInvalid {
                    path: path.to_path_buf(),
                    error: e.to_string(),
                },
            )];
            items.extend(
                Check::ALL
                    .into_iter()
                    .filter(|c| !matches!(c, Check::Config | Check::Service | Check::Systemd))
                    .map(|c| {
                        Item::new(
                            c,
                            Finding::NotChecked {
                                needs: Check::Config,
                            },
                        )
                    }),
            );
            items.extend(service::check(&opts.service));
            return finish(now, items, fix, None, opts);
        }
    };
    let mut items = vec![Item::new(
        Check::Config,
        Finding::ConfigOk {
            path: path.to_path_buf(),
            central: cfg.job_source() == crate::config::JobSourceMode::Central,
        },
    )];
    let identity = collector::identity(&cfg, now);
    items.extend(identity.items);
    let remote = if opts.skip.contains(&Check::CollectorConnect) {
        collector::CollectorCheck {
            items: Vec::new(),
            published_plan: None,
        }
    } else {
        collector::collector(&cfg, identity.usable.as_ref()).await
    };
    items.extend(remote.items);
    let plan = local::plan(&cfg, identity.usable.as_ref(), remote.published_plan, now);
    items.extend(plan.items);
    items.extend(database::check(&cfg, plan.jobs.as_ref()).await);
    items.push(local::spool(&cfg));
    items.extend(service::check(&opts.service));
    finish(now, items, fix, Some(cfg.agent.state_dir.clone()), opts)
}

/// Replaces skipped checks' items by one "skipped" each.
fn finish(
    now: chrono::DateTime<Utc>,
    items: Vec<Item>,
    fix: FixContext,
    state_dir: Option<std::path::PathBuf>,
    opts: &Options,
) -> Report {
    let mut out: Vec<Item> = items
        .into_iter()
        .filter(|i| !opts.skip.contains(&i.check))
        .collect();
    out.extend(opts.skip.iter().map(|c| Item::new(*c, Finding::Skipped)));
    Report::new(now, out, fix, state_dir)
}
