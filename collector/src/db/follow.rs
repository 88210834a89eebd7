//! Keeping an in-memory copy of a table current: refreshed at once when a
//! writer notifies on a channel (`pg_notify` at its commit, which reaches
//! every collector replica), and every `every` in case a notification was
//! missed (e.g. while the listening connection was re-established).

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// Calls `refresh` on each notification on `channel` and every `every`,
/// until `stop`. `what` names the copy in log lines.
pub async fn follow<F, Fut>(
    pool: &PgPool,
    channel: &'static str,
    what: &'static str,
    every: Duration,
    stop: CancellationToken,
    mut refresh: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), sqlx::Error>>,
{
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(mut l) => match l.listen(channel).await {
            Ok(()) => Some(l),
            Err(e) => {
                tracing::warn!(channel, error = %crate::pg_error::describe(&e), "cannot listen for changes; polling only");
                None
            }
        },
        Err(e) => {
            tracing::warn!(channel, error = %crate::pg_error::describe(&e), "cannot listen for changes; polling only");
            None
        }
    };
    loop {
        // The first pass catches a change between the first load and LISTEN.
        if let Err(e) = refresh().await {
            tracing::warn!(what, error = %crate::pg_error::describe(&e), "cannot refresh");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
            n = async { listener.as_mut().expect("guarded").recv().await }, if listener.is_some() => {
                match n {
                    Ok(n) => tracing::debug!(channel, payload = n.payload(), "change notified"),
                    Err(e) => tracing::debug!(channel, error = %crate::pg_error::describe(&e), "listener reconnecting"),
                }
            }
        }
    }
}
