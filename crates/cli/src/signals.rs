//! Ctrl-C and SIGTERM cancel the run: running steps are stopped (their process groups killed),
//! `finally` runs, and cairn exits 130. A second signal exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

pub fn cancel_on_signals(cancel: CancellationToken) {
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
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
