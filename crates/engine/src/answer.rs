//! Answering a waiting gate from outside its run: `cairn approve`/`reject` and the web console
//! both come through [`answer`], so an answer is admitted by the same rules whatever the door.
//! It finds the waiting gate, reads the rules recorded when it began to wait, admits the answer
//! ([`crate::gate::admit`]), records it, and says how the gate now stands. Resuming the run is
//! the caller's: the CLI prints the command, the console starts it.

use crate::gate::{self, Answer, Refusal, Rules, Verdict};
use cairn_state::{Approval, Decision, RunRecord, StateError, StepStatus, Store};

/// An answer and who gives it.
#[derive(Clone, Debug)]
pub struct Given {
    /// The run id, or a unique prefix of it.
    pub run: String,
    /// The gate's step id.
    pub step: String,
    pub decision: Decision,
    /// Who answers: the operating-system user, or the console's authenticated user.
    pub by: String,
    pub comment: Option<String>,
    /// Where the answer came from: the host name, or the console client's address.
    pub host: String,
    /// The terminal the answer was typed on, if any.
    pub tty: Option<String>,
}

/// The gate after an admitted answer.
#[derive(Clone, Debug)]
pub struct Answered {
    /// The run whose gate was answered.
    pub run: RunRecord,
    /// The top of its chain of parents: the run to resume.
    pub top: RunRecord,
    pub verdict: Verdict,
}

/// Why nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum NotAnswered {
    #[error("no run `{0}`")]
    NoRun(String),
    #[error(
        "step `{step}` waits for its sub-run {child}; answer the gate there (`cairn show {child}`), then `cairn resume {run}`"
    )]
    InSubRun {
        step: String,
        child: String,
        run: String,
    },
    #[error("step `{step}` of run {run} is {status}, not waiting for approval")]
    NotWaiting {
        step: String,
        run: String,
        status: StepStatus,
    },
    #[error("run {run} has no waiting step `{step}` ({})", waiting_hint(.waiting))]
    NoSuchGate {
        step: String,
        run: String,
        waiting: Vec<String>,
    },
    #[error("cannot read the rules of gate `{step}` (runbook {path} unreadable); nothing recorded")]
    RulesUnreadable { step: String, path: String },
    #[error("answer refused: {0}; nothing recorded")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    State(#[from] StateError),
}

fn waiting_hint(waiting: &[String]) -> String {
    if waiting.is_empty() {
        "no step of this run waits for approval".to_string()
    } else {
        format!("waiting: {}", waiting.join(", "))
    }
}

/// Record `given` on its gate if the gate's rules admit it. `member` answers whether a user is
/// in a group (Unix groups for the CLI, the identity provider's for the console); it is `Sync`
/// so that the answer's future may move between a server's threads.
pub async fn answer(
    store: &dyn Store,
    given: Given,
    member: &(dyn Fn(&str, &str) -> bool + Sync),
) -> Result<Answered, NotAnswered> {
    let Some(run) = store.get_run(&given.run).await? else {
        return Err(NotAnswered::NoRun(given.run));
    };
    let steps = store.steps(&run.id).await?;
    let waiting = match steps
        .iter()
        .find(|s| s.step_id == given.step && s.item.is_none())
    {
        Some(s) if s.status == StepStatus::Waiting => {
            // A `uses` step waits for a gate inside its sub-run: that gate is the one to answer.
            if let Some(child) = s
                .result
                .as_ref()
                .and_then(|r| r.get("run_id"))
                .and_then(|v| v.as_str())
            {
                return Err(NotAnswered::InSubRun {
                    step: given.step,
                    child: child.to_string(),
                    run: run.id,
                });
            }
            s
        }
        Some(s) => {
            return Err(NotAnswered::NotWaiting {
                step: given.step,
                run: run.id,
                status: s.status,
            });
        }
        None => {
            return Err(NotAnswered::NoSuchGate {
                step: given.step,
                run: run.id.clone(),
                waiting: steps
                    .iter()
                    .filter(|s| s.status == StepStatus::Waiting)
                    .map(|s| s.step_id.clone())
                    .collect(),
            });
        }
    };
    // The rules the gate was shown with when it began to wait; a gate recorded before they
    // were kept is judged by the runbook's rules as it stands.
    let since = waiting.started_at.unwrap_or_else(cairn_state::now);
    let rules = match waiting.result.as_ref().and_then(Rules::from_result) {
        Some(r) => r,
        None => rules_from_file(&run, &given.step, since).ok_or_else(|| {
            NotAnswered::RulesUnreadable {
                step: given.step.clone(),
                path: run.path.clone(),
            }
        })?,
    };
    let answer = Answer::new(given.decision == Decision::Approved, &given.by);
    let earlier = gate::answers_since(&store.approvals(&run.id).await?, &given.step, Some(since));
    gate::admit(&rules, &earlier, &answer, member)?;
    store
        .record_approval(&Approval {
            run_id: run.id.clone(),
            step_id: given.step.clone(),
            decision: given.decision,
            by: given.by.clone(),
            at: answer.at,
            comment: given.comment.filter(|c| !c.trim().is_empty()),
            host: Some(given.host),
            tty: given.tty,
        })
        .await?;
    let mut all = earlier;
    all.push(answer);
    let verdict = gate::judge(&rules, &all);
    // A sub-run continues through its parent: the top of the chain is what resumes.
    let mut top = run.clone();
    while let Some(parent) = top.parent_run.clone() {
        match store.get_run(&parent).await? {
            Some(p) => top = p,
            None => break,
        }
    }
    Ok(Answered { run, top, verdict })
}

fn rules_from_file(
    run: &RunRecord,
    step: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Option<Rules> {
    let (checked, _) = cairn_model::load(
        std::path::Path::new(&run.path),
        &cairn_template::Templates::new(),
    )
    .ok()?;
    checked
        .all_steps()
        .find(|s| s.id.value == step)
        .and_then(|s| match &s.kind {
            cairn_model::StepKind::Approval(g) => Some(Rules::of(g, &run.user, since)),
            _ => None,
        })
}
