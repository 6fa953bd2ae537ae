//! How `run`, `resume` and `check` run the engine: who runs it, where step logs go, and the
//! options built from both.

use cairn_engine::run::RunOptions;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Who runs this command: the operating-system user of the process's real uid, or, for root
/// running a command through sudo, the user who ran sudo (`SUDO_USER`). Never `$USER` or a
/// flag: those say whatever the caller writes, and this is the identity approvals rest on.
pub fn user() -> String {
    let uid = nix::unistd::getuid();
    if uid.is_root()
        && let Ok(by) = std::env::var("SUDO_USER")
        && nix::unistd::User::from_name(&by).ok().flatten().is_some()
    {
        return by;
    }
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// Where per-step logs go: beside a SQLite state file, else `.cairn/logs`.
pub fn logs_dir(state_url: &str) -> PathBuf {
    let dir = logs_dir_as_given(state_url);
    // Absolute, so `cairn show --step` finds a log from any folder.
    std::path::absolute(&dir).unwrap_or(dir)
}

fn logs_dir_as_given(state_url: &str) -> PathBuf {
    let path = state_url
        .strip_prefix("sqlite://")
        .or_else(|| state_url.strip_prefix("sqlite:"))
        .unwrap_or(state_url);
    if state_url.contains("://") && !state_url.starts_with("sqlite") || state_url == "memory:" {
        return PathBuf::from(".cairn/logs");
    }
    let path = path.split('?').next().unwrap_or(path);
    PathBuf::from(path).parent().map_or_else(
        || PathBuf::from(".cairn/logs"),
        |p| {
            if p.as_os_str().is_empty() {
                PathBuf::from("logs")
            } else {
                p.join("logs")
            }
        },
    )
}

/// How `run` and `resume` run: Ctrl-C and SIGTERM cancel, approvals prompt when both stdin and
/// stderr are terminals, `--auto-approve` answers as `auto:<user>`.
pub fn run_options(concurrency: usize, auto_approve: bool, state_url: &str) -> RunOptions {
    let cancel = tokio_util::sync::CancellationToken::new();
    crate::signals::cancel_on_signals(cancel.clone());
    let who = user();
    RunOptions {
        concurrency: concurrency.max(1),
        auto_approve: auto_approve.then(|| format!("auto:{who}")),
        interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        user: who,
        logs: logs_dir(state_url),
        cancel,
        ..RunOptions::default()
    }
}
