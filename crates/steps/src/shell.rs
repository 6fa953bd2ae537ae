//! The `shell` step kind: a command under `bash -euo pipefail`, or an argv with no shell.
//!
//! What an operator can rely on:
//! - stdin is /dev/null; `env` is added to Cairn's environment; `cwd` must exist.
//! - The child leads its own session (and process group), started by Cairn's spawner
//!   process, a child subreaper: everything the step starts stays below it, even a job that
//!   moved to a group of its own (`set -m`). On timeout or cancel every process of the step
//!   gets SIGTERM, [`GRACE`] to finish, then SIGKILL. When the main process exits, whatever
//!   it left running is stopped the same way, so a backgrounded grandchild holding the
//!   output pipe cannot make the step hang. The result's `stopped` names those processes
//!   (pid and program name). If Cairn dies (even by SIGKILL), the spawner SIGKILLs
//!   everything below it. See [`start_spawner`].
//! - With [`ShellSpec::detach`], what the main process leaves running when it exits 0 is
//!   released instead: it runs on after the step and after Cairn, and the result's `detached`
//!   names it. Such a process must not hold the step's output (redirect it to a file), and
//!   its environment is Cairn's [`KEPT_FOR_DETACHED`] variables plus the step's own.
//! - `stdout`/`stderr` in the result keep the LAST `capture_limit` bytes of each stream
//!   (the tail is where the error is), lossy UTF-8; `*_truncated` says bytes were dropped.
//!   `log_path`, when set, receives both whole streams as they arrive, line by line (a line
//!   not ended yet after 100 ms, or longer than 64 KiB, in pieces), after the filter; the file
//!   is created, replacing an older one, at the first byte: a silent command leaves none.
//! - `exit_code` is the process's exit code, or 128 + N when signal N ended it (as bash reports).
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_steps::StepError> {
//! use cairn_steps::shell::{run, Command, ShellSpec};
//! let mut spec = ShellSpec::new(Command::Shell("pg_isready -h db".into()));
//! spec.timeout = Some(std::time::Duration::from_secs(10));
//! let result = run(&spec, &tokio_util::sync::CancellationToken::new()).await?;
//! assert_eq!(result["exit_code"], 0);
//! # Ok(()) }
//! ```

mod capture;
mod group;
mod protocol;
mod server;
mod spawner;
mod tree;

pub use spawner::{KEPT_FOR_DETACHED, start as start_spawner};

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::StepError;
use capture::{SharedTail, Tail};

/// How long a stopped step's processes get between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the output pipes to close once every process in the group is gone.
const DRAIN: Duration = Duration::from_secs(1);
/// Default bytes of each stream kept in the result.
pub const DEFAULT_CAPTURE_LIMIT: usize = 1 << 20;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A script for `bash -euo pipefail -c`.
    Shell(String),
    /// A program and its arguments, passed as-is with no shell.
    Argv(Vec<String>),
}

/// Rewrites a process's output before it is kept or logged (the engine masks secrets with it).
pub trait OutputFilter: Send + Sync {
    /// Filters the start of `data`: returns the bytes to keep and how many input bytes they
    /// stand for. Bytes not consumed are given again, followed by more output, or with
    /// `at_end` set when the stream ended (then everything must be consumed).
    fn filter(&self, data: &[u8], at_end: bool) -> (Vec<u8>, usize);
}

/// A fully rendered shell step.
#[derive(Clone)]
pub struct ShellSpec {
    pub command: Command,
    /// Added to (or overriding) Cairn's own environment.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub timeout: Option<Duration>,
    /// Both whole streams are written here as they arrive, whole lines at a time, after
    /// `filter`; the file (and its folders) is created at the first byte, replacing an older
    /// one. A file that cannot be opened or written is warned about, and logging stops.
    pub log_path: Option<PathBuf>,
    /// Bytes kept in memory per stream (the last ones); default [`DEFAULT_CAPTURE_LIMIT`].
    pub capture_limit: usize,
    /// Applied to both streams as they arrive, before the tail and the log see them.
    pub filter: Option<std::sync::Arc<dyn OutputFilter>>,
    /// Start a long-lived process: when the main process exits 0, what it left running is
    /// released (runs on after the step and after Cairn) instead of stopped. The step fails
    /// if one of those still holds the step's stdout or stderr (it would block once the pipe
    /// is full, or die of SIGPIPE, when nobody reads it any more). The process starts with
    /// only [`KEPT_FOR_DETACHED`] of Cairn's environment, plus `env`.
    pub detach: bool,
}

impl std::fmt::Debug for ShellSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellSpec")
            .field("command", &self.command)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("timeout", &self.timeout)
            .field("log_path", &self.log_path)
            .field("capture_limit", &self.capture_limit)
            .field("filter", &self.filter.is_some())
            .field("detach", &self.detach)
            .finish()
    }
}

impl ShellSpec {
    pub fn new(command: Command) -> Self {
        ShellSpec {
            command,
            env: Vec::new(),
            cwd: None,
            timeout: None,
            log_path: None,
            capture_limit: DEFAULT_CAPTURE_LIMIT,
            filter: None,
            detach: false,
        }
    }
}

/// How the wait for the main process ended.
enum Ending {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

/// Runs the step. `Ok` only for exit code 0; the result JSON is also inside every error
/// except `Setup`.
pub async fn run(spec: &ShellSpec, cancel: &CancellationToken) -> Result<Value, StepError> {
    let (program, args) = command_line(spec)?;
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let launch = spawner::Launch {
        program: OsStr::new(program),
        args: &args,
        env: &spec.env,
        cwd: spec.cwd.as_deref(),
        clean_env: spec.detach,
    };
    let log = capture::LogFile::shared(spec.log_path.as_deref());
    let started = Instant::now();
    let spawner = spawner::get().map_err(|e| StepError::setup(e.to_string()))?;
    let process = spawner
        .spawn(&launch)
        .await
        .map_err(|e| spawn_error(e, &spec.command))?;
    let (mut group, pipes) = group::Group::new(spawner, process);

    let out = Arc::new(Mutex::new(Tail::new(spec.capture_limit)));
    let err = Arc::new(Mutex::new(Tail::new(spec.capture_limit)));
    let pumps = vec![
        tokio::spawn(capture::pump(
            pipes.stdout,
            out.clone(),
            log.clone(),
            spec.filter.clone(),
        )),
        tokio::spawn(capture::pump(
            pipes.stderr,
            err.clone(),
            log.clone(),
            spec.filter.clone(),
        )),
    ];

    let ending = tokio::select! {
        status = group.wait() => Ending::Exited(status),
        () = sleep_opt(spec.timeout) => Ending::TimedOut,
        () = cancel.cancelled() => Ending::Cancelled,
    };
    let mut pumps: Vec<Option<_>> = pumps.into_iter().map(Some).collect();
    let mut left = Left::None;
    let (status, stopped) = match ending {
        Ending::Exited(status) if spec.detach && status.as_ref().is_ok_and(ExitStatus::success) => {
            // The pipes close unless a process left running holds them: then it cannot be
            // left to run on (see `ShellSpec::detach`).
            if drain(&mut pumps, DRAIN).await {
                left = match group.release() {
                    Ok(released) => Left::Detached(released),
                    Err(e) => return Err(StepError::setup(e.to_string())),
                };
            } else {
                let holding = group.leftovers();
                let stopped = group.stop_leftovers(GRACE).await;
                left = Left::Holding(if holding.is_empty() { stopped } else { holding });
            }
            (status, None)
        }
        Ending::Exited(status) => {
            left = Left::Stopped(group.stop_leftovers(GRACE).await);
            (status, None)
        }
        stop @ (Ending::TimedOut | Ending::Cancelled) => (group.terminate(GRACE).await, Some(stop)),
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    drop(group);

    // Every process of the group is gone, so the pipes close unless something escaped the
    // group with them: do not wait for that one.
    if !drain(&mut pumps, DRAIN).await {
        for pump in pumps.iter_mut().filter_map(Option::take) {
            pump.abort();
        }
    }

    let status =
        status.map_err(|e| StepError::setup(format!("waiting for the command failed: {e}")))?;
    let exit_code = status
        .code()
        .or(status.signal().map(|s| 128 + s))
        .unwrap_or(-1);
    let mut result = result_json(exit_code, &out, &err, duration_ms);
    if let Some((key, list)) = left.listed() {
        result[key] = leftovers_json(list);
    }
    if let Left::Holding(holding) = &left {
        return Err(StepError::failed(
            format!(
                "{} left running still {} the step's output, so it cannot run on after the \
                 step: stopped; redirect its stdout and stderr (`nohup CMD >FILE 2>&1 &`)",
                leftovers_text(holding),
                if holding.len() == 1 { "holds" } else { "hold" },
            ),
            Some(result),
        ));
    }

    match stopped {
        Some(Ending::TimedOut) => {
            let after = spec.timeout.unwrap_or_default();
            return Err(StepError::Timeout {
                after,
                result: Some(result),
            });
        }
        Some(_) => {
            return Err(StepError::Cancelled {
                result: Some(result),
            });
        }
        None if status.success() => return Ok(result),
        None => {}
    }
    let stderr = result["stderr"].as_str().unwrap_or_default();
    Err(StepError::failed(
        failure_message(&spec.command, &status, stderr),
        Some(result),
    ))
}

/// What the main process left running when it exited, and what became of it.
enum Left {
    None,
    /// Stopped with the step (the result's `stopped`).
    Stopped(Vec<group::Leftover>),
    /// Released to run on (the result's `detached`; may be empty).
    Detached(Vec<group::Leftover>),
    /// A detached step's processes that kept its output pipes: stopped, and the step fails.
    Holding(Vec<group::Leftover>),
}

impl Left {
    fn listed(&self) -> Option<(&'static str, &[group::Leftover])> {
        match self {
            Left::None => None,
            Left::Stopped(l) | Left::Holding(l) if l.is_empty() => None,
            Left::Stopped(l) | Left::Holding(l) => Some(("stopped", l)),
            Left::Detached(l) => Some(("detached", l)),
        }
    }
}

fn leftovers_json(list: &[group::Leftover]) -> Value {
    list.iter()
        .map(|l| json!({ "pid": l.pid, "command": l.command }))
        .collect()
}

/// `pid 1234 (python3)`, `pids 1234 (python3), 1240 (sleep)`.
fn leftovers_text(list: &[group::Leftover]) -> String {
    let each: Vec<String> = list
        .iter()
        .map(|l| format!("{} ({})", l.pid, l.command))
        .collect();
    format!(
        "{} {}",
        if list.len() == 1 { "pid" } else { "pids" },
        each.join(", ")
    )
}

/// What a shell step's result says of the processes its command left running, in one line:
/// `stopped what it left running: pid 1234 (python3)`, `left running: pid 1234 (python3)`,
/// `left nothing running`. `None` when the result names none (and the step did not detach).
pub fn leftovers_note(result: &Value) -> Option<String> {
    let list = |key: &str| -> Option<Vec<group::Leftover>> {
        let items = result.get(key)?.as_array()?;
        Some(
            items
                .iter()
                .map(|i| group::Leftover {
                    pid: i["pid"]
                        .as_i64()
                        .and_then(|p| i32::try_from(p).ok())
                        .unwrap_or(0),
                    command: i["command"].as_str().unwrap_or("?").to_string(),
                })
                .collect(),
        )
    };
    if let Some(stopped) = list("stopped").filter(|l| !l.is_empty()) {
        return Some(format!(
            "stopped what it left running: {}",
            leftovers_text(&stopped)
        ));
    }
    let detached = list("detached")?;
    Some(if detached.is_empty() {
        "left nothing running".to_string()
    } else {
        format!("left running: {}", leftovers_text(&detached))
    })
}

/// Waits up to `limit` for the output pumps to end (both pipes closed by every process);
/// true when they all did. A pump that ended is taken out of the list.
async fn drain(pumps: &mut [Option<tokio::task::JoinHandle<()>>], limit: Duration) -> bool {
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    for slot in pumps.iter_mut() {
        let Some(pump) = slot.as_mut() else { continue };
        tokio::select! {
            _ = pump => *slot = None,
            () = &mut deadline => return false,
        }
    }
    true
}

/// The program and its arguments; checks the working folder first.
fn command_line(spec: &ShellSpec) -> Result<(&str, Vec<&str>), StepError> {
    if let Some(cwd) = spec.cwd.as_ref().filter(|cwd| !cwd.is_dir()) {
        return Err(StepError::setup(format!(
            "working directory `{}` does not exist or is not a directory",
            cwd.display()
        )));
    }
    match &spec.command {
        Command::Shell(script) => Ok(("bash", vec!["-euo", "pipefail", "-c", script])),
        Command::Argv(argv) => match argv.split_first() {
            Some((program, args)) => Ok((program, args.iter().map(String::as_str).collect())),
            None => Err(StepError::setup("argv is empty: nothing to run")),
        },
    }
}

fn spawn_error(error: std::io::Error, command: &Command) -> StepError {
    let program = match command {
        Command::Shell(_) => "bash",
        Command::Argv(argv) => argv.first().map(String::as_str).unwrap_or_default(),
    };
    match error.kind() {
        std::io::ErrorKind::NotFound => StepError::setup(format!(
            "command not found: `{program}` (is it installed and on PATH?)"
        )),
        std::io::ErrorKind::PermissionDenied => StepError::setup(format!(
            "permission denied running `{program}` (is it executable?)"
        )),
        _ => StepError::setup(format!("cannot start `{program}`: {error}")),
    }
}

fn failure_message(command: &Command, status: &ExitStatus, stderr: &str) -> String {
    let line = last_line(stderr);
    if matches!(command, Command::Shell(_)) && status.code() == Some(127) {
        // bash: "bash: line 1: pg_dumpx: command not found"
        if let Some(name) = line
            .strip_suffix(": command not found")
            .and_then(|l| l.rsplit(": ").next())
        {
            return format!("command not found: `{name}` (is it installed and on PATH?)");
        }
        if !line.is_empty() {
            return format!("command not found: {line}");
        }
    }
    let head = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(name) => format!("killed by signal {signal} ({name})"),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => "failed".to_string(),
    };
    if line.is_empty() {
        head
    } else {
        format!("{head}: {line}")
    }
}

/// The last non-empty line, trimmed to about 200 characters.
fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default();
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

fn result_json(exit_code: i32, out: &SharedTail, err: &SharedTail, duration_ms: u64) -> Value {
    let out = out.lock().unwrap_or_else(PoisonError::into_inner);
    let err = err.lock().unwrap_or_else(PoisonError::into_inner);
    json!({
        "exit_code": exit_code,
        "stdout": out.text(),
        "stderr": err.text(),
        "stdout_truncated": out.truncated(),
        "stderr_truncated": err.truncated(),
        "duration_ms": duration_ms,
    })
}

async fn sleep_opt(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
