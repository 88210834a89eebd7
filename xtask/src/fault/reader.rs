//! The concurrent reader: polls the targets as an analyst would, all
//! campaign long, and says whether it ever saw a partial state.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio_postgres::Client;

use transmissor_tests::stack::{ANALYTIC_DB, Municipality, Stack};

use super::checks::committed_appends;

/// What the reader saw since its last reset.
#[derive(Default)]
struct Seen {
    /// `(count, sum(id))` of the snapshot slice.
    snapshot: BTreeSet<(i64, i64)>,
    /// `(transmission, rows)` in the append target.
    appended: BTreeSet<(i64, i64)>,
    polls: u64,
}

/// Polls the targets, reconnecting after server restarts.
pub(super) struct Reader {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reader {
    pub fn idle() -> Self {
        Self {
            seen: Arc::default(),
            stop: Arc::default(),
            task: None,
        }
    }

    pub fn start(stack: &Stack, m: &Municipality) -> Self {
        let mut r = Self::idle();
        let (seen, stop) = (r.seen.clone(), r.stop.clone());
        let connect = stack.analytic.url(ANALYTIC_DB);
        let ibge = m.ibge.as_str().to_string();
        r.task = Some(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&connect, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    poll_until_error(&client, &ibge, &seen, &stop).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        r
    }

    pub fn reset(&self) {
        if let Ok(mut s) = self.seen.lock() {
            *s = Seen::default();
        }
    }

    /// Problems with what was seen since the reset: a snapshot state other
    /// than `allowed`, an append transmission seen with other than its
    /// committed rows.
    pub async fn check(&self, allowed: &[(i64, i64)], stack: &Stack) -> Result<Vec<String>> {
        let seen = std::mem::take(
            &mut *self
                .seen
                .lock()
                .map_err(|_| anyhow::anyhow!("reader lock"))?,
        );
        let analytic = stack.analytic_client().await?;
        let committed = committed_appends(&analytic).await?;
        let mut problems = Vec::new();
        if seen.polls == 0 {
            problems.push("the concurrent reader never completed a poll".into());
        }
        let partial: Vec<_> = seen
            .snapshot
            .iter()
            .filter(|s| !allowed.contains(s))
            .collect();
        if !partial.is_empty() {
            problems.push(format!(
                "a reader saw snapshot states {partial:?}; allowed {allowed:?}"
            ));
        }
        let partial: Vec<_> = seen.appended.difference(&committed).collect();
        if !partial.is_empty() {
            problems.push(format!("a reader saw partial appends {partial:?}"));
        }
        Ok(problems)
    }

    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

async fn poll_until_error(client: &Client, ibge: &str, seen: &Mutex<Seen>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let snapshot = client
            .query_one(
                "SELECT count(*), coalesce(sum(id), 0)::int8 FROM analytic.grande WHERE _ibge = $1",
                &[&ibge],
            )
            .await;
        let appended = client
            .query(
                "SELECT _transmission_id, count(*) FROM analytic.grande_lista GROUP BY 1",
                &[],
            )
            .await;
        let (Ok(snapshot), Ok(appended)) = (snapshot, appended) else {
            return;
        };
        if let Ok(mut s) = seen.lock() {
            s.snapshot.insert((snapshot.get(0), snapshot.get(1)));
            s.appended
                .extend(appended.iter().map(|r| (r.get(0), r.get(1))));
            s.polls += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
