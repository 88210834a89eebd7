//! Turns SIGINT / SIGTERM (on Windows: Ctrl-C, Ctrl-Break, closing the
//! console window, system shutdown) into a cancellation that the server's
//! ordered shutdown follows. The agent's Windows service does not use this:
//! its control handler cancels the token when the service control manager
//! sends Stop or Shutdown.

use tokio_util::sync::CancellationToken;

/// Cancels the returned token on the first termination signal.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("termination signal received");
        t.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Ctrl-C, Ctrl-Break, closing the console window, system shutdown. After
/// the last two Windows ends the process within seconds, drained or not: the
/// spool and the collector's commit protocol make an interrupted run resume.
#[cfg(windows)]
async fn wait_for_signal() {
    use tokio::signal::windows;
    // A handler that cannot be installed never fires (its branch is
    // disabled); Ctrl-C always can.
    let mut brk = windows::ctrl_break().ok();
    let mut close = windows::ctrl_close().ok();
    let mut shutdown = windows::ctrl_shutdown().ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { brk.as_mut()?.recv().await } => {}
        Some(()) = async { close.as_mut()?.recv().await } => {}
        Some(()) = async { shutdown.as_mut()?.recv().await } => {}
    }
}

#[cfg(not(any(unix, windows)))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
