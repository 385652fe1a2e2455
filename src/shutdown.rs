//! SIGTERM and SIGINT become one cancellation, without taking over signal handling
//! for anything else in the process.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Cancels `token` on the first SIGTERM or SIGINT. Must be called inside a Tokio
/// runtime. If a handler cannot be installed, that signal keeps its default action
/// (terminate), which is still a clean enough stop for a process that writes
/// atomically.
pub fn cancel_on_signals(token: CancellationToken) {
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot handle SIGTERM");
            None
        }
    };
    let mut interrupt = match signal(SignalKind::interrupt()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot handle SIGINT");
            None
        }
    };
    tokio::spawn(async move {
        let name = tokio::select! {
            Some(()) = recv(&mut terminate) => "SIGTERM",
            Some(()) = recv(&mut interrupt) => "SIGINT",
            () = token.cancelled() => return,
        };
        info!(signal = name, "shutting down");
        token.cancel();
    });
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
