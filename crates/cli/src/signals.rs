//! Ctrl-C and SIGTERM cancel the run: running steps are stopped (their process groups killed),
//! `finally` runs, and cairn exits 130. A second signal exits at once: the spawner process sees
//! cairn's end of its socket close and SIGKILLs every process still running below it, those of
//! a `finally` step included.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Must be called inside the runtime. The handlers are installed before this returns, not
/// when the watching task first runs: a Ctrl-C that arrives while the first step starts must
/// cancel the run, not kill cairn with the default action (and skip `finally`).
pub fn cancel_on_signals(cancel: CancellationToken) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install the Ctrl-C handler: a signal will stop cairn at once");
        return;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!(
            "interrupted: stopping running steps, then running `finally` (signal again to exit at once)"
        );
        cancel.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        std::process::exit(130);
    });
}

/// SIGUSR1 drains a worker: it claims nothing more and stops once what it holds has ended.
pub fn drain_on_sigusr1(drain: CancellationToken) {
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        tracing::warn!(
            "cannot install the SIGUSR1 handler: a drain signal will stop cairn at once"
        );
        return;
    };
    tokio::spawn(async move {
        usr1.recv().await;
        drain.cancel();
        // Later SIGUSR1s change nothing (the default action would kill the worker).
        while usr1.recv().await.is_some() {}
    });
}
