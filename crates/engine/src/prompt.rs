//! The terminal side of an approval gate: one reader of standard input for the whole process,
//! so that a prompt answered from another shell leaves no reader behind to swallow the next
//! prompt's answer.

use std::io::BufRead;
use std::sync::OnceLock;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::sync::{Mutex, MutexGuard};

/// The lines typed on standard input, read by one thread started on first use.
pub(crate) fn lines() -> &'static Mutex<UnboundedReceiver<String>> {
    static LINES: OnceLock<Mutex<UnboundedReceiver<String>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let (tx, rx) = unbounded_channel();
        let reader = std::thread::Builder::new()
            .name("cairn-prompt".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = reader {
            tracing::warn!(error = %e, "cannot read the terminal");
        }
        Mutex::new(rx)
    })
}

/// The next line typed, for the gate holding the terminal; never, for one that does not (or
/// once the terminal closed).
pub(crate) async fn next_line(
    terminal: &mut Option<MutexGuard<'static, UnboundedReceiver<String>>>,
    closed: bool,
) -> Option<String> {
    match terminal {
        Some(lines) if !closed => lines.recv().await,
        _ => std::future::pending().await,
    }
}

/// Lines typed before the question was asked are not answers to it.
pub(crate) fn drain(rx: &mut UnboundedReceiver<String>) {
    while rx.try_recv().is_ok() {}
}

/// `y`/`yes` approves, `n`/`no` rejects; anything else is asked again.
pub(crate) fn parse(line: &str) -> Option<bool> {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(true),
        "n" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_clear_yes_or_no_is_an_answer() {
        for (line, answer) in [
            ("y", Some(true)),
            (" YES\r", Some(true)),
            ("n", Some(false)),
            ("No", Some(false)),
            ("", None),
            ("yep", None),
            ("y y", None),
        ] {
            assert_eq!(super::parse(line), answer, "{line:?}");
        }
    }
}
