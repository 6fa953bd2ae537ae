//! What the console does to runs: answer a gate (through the engine's one door for answers,
//! [`cairn_engine::answer::answer`], exactly as `cairn approve`/`reject`), and resume a run
//! (by starting `cairn resume RUN` as a process of its own, or, for a run a worker paused,
//! by queueing it again for a worker, as `cairn approve` does). Every action is written to the
//! run's audit trail with who, from where and when, whether it was taken or refused.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use cairn_engine::answer::{Given, NotAnswered};
use cairn_engine::gate::Verdict;
use cairn_state::{Action, Decision, QueueStatus, RunRecord, RunStatus, StateError, Store};

use crate::auth::{Caller, Identity};

/// How the console resumes runs: the `cairn` executable and the store's URL.
#[derive(Clone, Debug)]
pub struct Resumer {
    pub exe: PathBuf,
    pub state_url: String,
    /// Where each resume's own output goes (`LOGS/RUN/resume-TIME.log`).
    pub logs_dir: PathBuf,
    /// The run queue, on PostgreSQL: a run a worker paused is queued again once its gate is
    /// decided, for a worker whose labels match it, never resumed on the console's host
    /// (which may lack what the run needs).
    pub queue: Option<cairn_state::PgStore>,
}

impl Resumer {
    /// After an answer decided a gate of the chain topped by `top_run`: queue it again when a
    /// worker paused it, else start `cairn resume` here (as `cairn approve` tells its user to).
    pub async fn after_answer(&self, top_run: &str) -> Result<String, String> {
        if let Some(queue) = &self.queue {
            match queue.requeue(top_run).await {
                Ok(true) => {
                    return Ok(format!(
                        "run {top_run} is queued again for a worker to resume"
                    ));
                }
                // Another answer queued it first, or a worker holds it: it goes on there. A
                // `cairn resume` here would race the worker for the run.
                Ok(false) => match queue.queue_status(top_run).await {
                    Ok(Some(s @ (QueueStatus::Queued | QueueStatus::Claimed))) => {
                        return Ok(format!(
                            "run {top_run} is {} in the queue: a worker resumes it",
                            s.as_str()
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("run {top_run}: {e}")),
                },
                Err(e) => return Err(format!("run {top_run} could not be queued again: {e}")),
            }
        }
        self.start(top_run, None)
    }

    /// Starts `cairn resume RUN --state URL` in its own process group, so that it outlives
    /// the server (a restart of the console does not stop a run); its output goes to a file
    /// beside the run's step logs. The child is reaped by a task of the server.
    pub fn start(&self, run_id: &str, from: Option<&str>) -> Result<String, String> {
        let dir = self.logs_dir.join(run_id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = dir.join(format!(
            "resume-{}.log",
            cairn_state::now().format("%Y%m%dT%H%M%S%.6fZ")
        ));
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("resume")
            .arg(run_id)
            .arg("--state")
            .arg(&self.state_url)
            // `--from=STEP` in one argument: a step id can never be read as an option.
            .args(from.map(|f| format!("--from={f}")))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        let pid = child.id().unwrap_or(0);
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(format!(
            "started `cairn resume {run_id}{}` (pid {pid}, output in {})",
            from.map(|f| format!(" --from {f}")).unwrap_or_default(),
            log.display()
        ))
    }
}

/// How an action ended, for the caller.
pub enum Outcome {
    /// Done: what to tell the user.
    Done(String),
    /// Refused by the engine's rules or the run's state (nothing recorded but the audit line).
    Refused(String),
    /// The gate, the run or the step does not exist.
    Missing(String),
}

/// Writes an action, taken or refused, to the run's audit trail.
pub(crate) async fn audit(
    store: &dyn Store,
    run_id: &str,
    who: &Identity,
    caller: &Caller,
    action: &str,
    step: Option<&str>,
    detail: String,
) -> Result<(), StateError> {
    store
        .record_action(&Action {
            run_id: run_id.to_string(),
            at: cairn_state::now(),
            by: who.user.clone(),
            source: caller.source.clone(),
            action: action.to_string(),
            step_id: step.map(str::to_string),
            detail: Some(detail),
        })
        .await
}

/// An answer asked of the console.
pub struct Asked<'a> {
    pub run: &'a RunRecord,
    pub step: &'a str,
    pub decision: Decision,
    pub comment: Option<String>,
}

/// Answers the gate as `who`. When the answer decides the gate, the top run of its chain is
/// resumed: queued again if a worker paused it, else by a `cairn resume` started here.
pub async fn answer(
    store: &Arc<dyn Store>,
    resumer: &Resumer,
    asked: Asked<'_>,
    who: &Identity,
    caller: &Caller,
) -> Result<Outcome, StateError> {
    let Asked {
        run,
        step,
        decision,
        comment,
    } = asked;
    let verb = match decision {
        Decision::Approved => "approve",
        Decision::Rejected => "reject",
    };
    let groups = who.groups.clone();
    let user = who.user.clone();
    // `group:NAME` approvers: the groups the console's identity carries.
    let member = move |u: &str, g: &str| u == user && groups.iter().any(|x| x == g);
    let given = Given {
        run: run.id.clone(),
        step: step.to_string(),
        decision,
        by: who.user.clone(),
        comment: comment.map(|c| c.chars().take(2000).collect()),
        host: caller.source.clone(),
        tty: None,
    };
    let result = cairn_engine::answer::answer(store.as_ref(), given, &member).await;
    let outcome = match result {
        Ok(answered) => match answered.verdict {
            Verdict::Pending { have, need } => Outcome::Done(format!(
                "{verb}d as {}: {have} of {need} approvals; the gate waits for {} more",
                who.user,
                need - have
            )),
            _ => {
                let started = resumer.after_answer(&answered.top.id).await;
                let said = match &started {
                    Ok(s) => s.clone(),
                    Err(e) => format!("the run could not be resumed: {e}"),
                };
                audit(
                    store.as_ref(),
                    &answered.top.id,
                    who,
                    caller,
                    "resume",
                    None,
                    format!("after the answer to `{step}` of run {}: {said}", run.id),
                )
                .await?;
                Outcome::Done(format!("{verb}d as {}; {said}", who.user))
            }
        },
        Err(NotAnswered::State(e)) => return Err(e),
        Err(e @ (NotAnswered::NoRun(_) | NotAnswered::NoSuchGate { .. })) => {
            Outcome::Missing(e.to_string())
        }
        Err(e) => Outcome::Refused(e.to_string()),
    };
    let detail = match &outcome {
        Outcome::Done(s) => format!("recorded: {s}"),
        Outcome::Refused(s) | Outcome::Missing(s) => format!("refused: {s}"),
    };
    audit(
        store.as_ref(),
        &run.id,
        who,
        caller,
        verb,
        Some(step),
        detail,
    )
    .await?;
    Ok(outcome)
}

/// Resumes a run that is failed, interrupted or paused, as `who`; with `from`, re-runs that
/// step and everything downstream of it (`cairn resume --from`).
pub async fn resume(
    store: &Arc<dyn Store>,
    resumer: &Resumer,
    run: &RunRecord,
    from: Option<&str>,
    who: &Identity,
    caller: &Caller,
) -> Result<Outcome, StateError> {
    let known = match from {
        Some(step) => store
            .step_defs(&run.id)
            .await?
            .iter()
            .any(|d| d.step_id == step),
        None => true,
    };
    let outcome = if run.parent_run.is_some() {
        Outcome::Refused(format!(
            "run {} is a sub-run: resume its parent {}",
            run.id,
            run.parent_run.as_deref().unwrap_or("")
        ))
    } else if !known {
        Outcome::Missing(format!(
            "run {} has no step `{}`",
            run.id,
            from.unwrap_or_default()
        ))
    } else if matches!(
        run.status,
        RunStatus::Failed | RunStatus::Interrupted | RunStatus::Paused
    ) || (from.is_some() && run.status == RunStatus::Succeeded)
    {
        match resumer.start(&run.id, from) {
            Ok(s) => Outcome::Done(s),
            Err(e) => Outcome::Refused(format!("the run could not be resumed: {e}")),
        }
    } else {
        Outcome::Refused(format!(
            "run {} is {}: only a failed, interrupted or paused run is resumed (a succeeded one \
             is re-run from a step)",
            run.id, run.status
        ))
    };
    let detail = match &outcome {
        Outcome::Done(s) => s.clone(),
        Outcome::Refused(s) | Outcome::Missing(s) => format!("refused: {s}"),
    };
    let action = if from.is_some() { "rerun" } else { "resume" };
    audit(store.as_ref(), &run.id, who, caller, action, from, detail).await?;
    Ok(outcome)
}

/// Cancels a running run as Ctrl-C would: SIGTERM to its `cairn` process, which stops its
/// running steps, runs `finally` and records the run interrupted. Only a run whose process is
/// on this host and is the one recorded (pid and start time) is signalled.
pub async fn cancel(
    store: &Arc<dyn Store>,
    run: &RunRecord,
    who: &Identity,
    caller: &Caller,
) -> Result<Outcome, StateError> {
    let here = cairn_state::current_host();
    let outcome = if run.status != RunStatus::Running {
        Outcome::Refused(format!("run {} is {}, not running", run.id, run.status))
    } else if run.host != here {
        Outcome::Refused(format!(
            "run {} runs on host {}: this console (on {here}) cannot signal it; cancel it there",
            run.id, run.host
        ))
    } else if run.pid_start.is_none() || cairn_state::process_start(run.pid) != run.pid_start {
        Outcome::Refused(format!(
            "the process of run {} (pid {}) cannot be told apart from another: not signalled",
            run.id, run.pid
        ))
    } else {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(run.pid).unwrap_or(i32::MAX));
        match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
            Ok(()) => Outcome::Done(format!(
                "sent SIGTERM to pid {}: its running steps stop, `finally` runs, the run is \
                 recorded interrupted",
                run.pid
            )),
            Err(e) => Outcome::Refused(format!("cannot signal pid {}: {e}", run.pid)),
        }
    };
    let detail = match &outcome {
        Outcome::Done(s) => s.clone(),
        Outcome::Refused(s) | Outcome::Missing(s) => format!("refused: {s}"),
    };
    audit(store.as_ref(), &run.id, who, caller, "cancel", None, detail).await?;
    Ok(outcome)
}
