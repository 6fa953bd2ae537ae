//! Scheduling the DAG: which steps are ready, which are blocked by a failure or a waiting
//! gate, and how many run at once.

use crate::events::{Event, Status};
use crate::outcome::{Hold, Outcome};
use crate::shared::{Shared, on_failure};
use crate::step_runner::{conclude, define, run_step};
use cairn_model::OnFailure;
use cairn_state::{StepRecord, StepStatus};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// The main DAG. Returns whether the run paused on an approval.
pub(crate) async fn run_dag(shared: &Arc<Shared>, outcomes: &mut [Option<Outcome>]) -> bool {
    let dag = &shared.checked.dag;
    let n = shared.checked.runbook.steps.len();
    let mut waiting_on: Vec<usize> = (0..n).map(|i| dag.parents(i).len()).collect();
    // Steps whose outcome is already known (restored on resume) are not run again, but they
    // take their turn like the others: they release what waits for them only once every step
    // they need has finished in this attempt, so nothing starts before a step above it that
    // runs again.
    let known: Vec<bool> = outcomes.iter().take(n).map(Option::is_some).collect();
    let mut ready: BTreeSet<(usize, usize)> = (0..n)
        .filter(|&i| waiting_on[i] == 0)
        .map(|i| (dag.group[i], i))
        .collect();
    let mut running = JoinSet::new();
    let mut task_of = std::collections::HashMap::new();
    let mut paused = false;
    let cancel = shared.opts.cancel.clone();
    loop {
        let mut started = false;
        while running.len() < shared.opts.concurrency.max(1) && !cancel.is_cancelled() {
            let Some(&(g, i)) = ready.iter().next() else {
                break;
            };
            ready.remove(&(g, i));
            // Upstream declined, failed (abort) or paused: this step cannot run. A "no" above
            // it decides first: the step will never run, whatever else waits above it.
            let parents = dag.parents(i);
            let declined = parents.iter().copied().find(|&p| {
                outcomes[p]
                    .as_ref()
                    .is_some_and(|o| o.hold == Hold::Declined)
            });
            let blocker = declined.or_else(|| {
                parents.into_iter().find(|&p| match &outcomes[p] {
                    Some(o) => {
                        (o.status == Status::Failed && on_failure(shared, p) == OnFailure::Abort)
                            || o.status == Status::Waiting
                            || o.hold != Hold::No
                    }
                    None => true,
                })
            });
            if let Some(p) = blocker {
                let parent = &outcomes[p];
                if declined.is_none()
                    && parent.as_ref().is_some_and(|o| {
                        o.status == Status::Waiting || o.hold == Hold::WaitsForApproval
                    })
                {
                    // Left pending: it runs after the approval, on resume.
                    outcomes[i] = Some(Outcome {
                        status: Status::Pending,
                        note: Some("waits for an approval".into()),
                        hold: Hold::WaitsForApproval,
                        ..Outcome::skipped("")
                    });
                } else {
                    let o = Outcome {
                        hold: if declined.is_some() {
                            Hold::Declined
                        } else {
                            Hold::Blocked
                        },
                        // Name the step that failed or said no, not the one it blocked on the
                        // way down.
                        note: match outcomes[p].as_ref() {
                            Some(po) if crate::gate::is_declined(Some(&po.result)) => {
                                Some(format!(
                                    "not run: `{}` was {}",
                                    shared.step(p).id.value,
                                    declined_how(po)
                                ))
                            }
                            Some(po) if po.hold != Hold::No => po.note.clone(),
                            _ => Some(format!("not run: `{}` failed", shared.step(p).id.value)),
                        },
                        ..Outcome::skipped("")
                    };
                    let mut rec = StepRecord::new(
                        &shared.run_id,
                        &shared.step(i).id.value,
                        None,
                        &shared.def_hashes[i],
                    );
                    rec.status = StepStatus::Skipped;
                    rec.error = o.note.clone();
                    shared.checkpoint(&rec).await;
                    shared.sink.emit(&Event::StepFinished {
                        step: shared.step(i).id.value.clone(),
                        item: None,
                        status: Status::Skipped,
                        attempts: 0,
                        duration: Duration::ZERO,
                        error: None,
                        note: o.note.clone(),
                    });
                    define(shared, i, &o);
                    outcomes[i] = Some(o);
                }
                release(dag, i, &mut waiting_on, &mut ready);
                continue;
            }
            if known[i] {
                release(dag, i, &mut waiting_on, &mut ready);
                continue;
            }
            let (sh, token) = (shared.clone(), cancel.clone());
            let task = running.spawn(async move { (i, run_step(sh, i, token).await) });
            task_of.insert(task.id(), i);
            started = true;
        }
        // A step that starts commits the ends recorded before it with its own first record;
        // when none starts, they are committed now rather than wait for the steps in flight.
        if !started {
            shared.flush().await;
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (i, o) = match joined {
            Ok(x) => x,
            // A bug in Cairn, not in the runbook: the step is failed, never silently dropped.
            Err(e) => {
                let Some(&i) = task_of.get(&e.id()) else {
                    continue;
                };
                tracing::error!(step = %shared.step(i).id.value, error = %e, "a step task panicked");
                let o = Outcome {
                    status: Status::Failed,
                    error: Some(format!("internal error in Cairn: {e}")),
                    ..Outcome::skipped("")
                };
                (i, conclude(shared, i, o).await)
            }
        };
        if o.status == Status::Waiting {
            paused = true;
        }
        outcomes[i] = Some(o);
        release(dag, i, &mut waiting_on, &mut ready);
    }
    paused
        || outcomes
            .iter()
            .take(n)
            .any(|o| o.as_ref().is_some_and(|o| o.status == Status::Waiting))
}

/// How a step said no, for the note of what it holds back: `rejected by alice`.
fn declined_how(o: &Outcome) -> String {
    match o
        .result
        .get("approved_by")
        .and_then(serde_json::Value::as_str)
    {
        Some(by) if o.result.get("approved").is_some() => format!("rejected by {by}"),
        _ => o.error.clone().unwrap_or_else(|| "declined".to_string()),
    }
}

/// `i` is done (or its restored outcome has taken its turn): what waits for it may become
/// ready. Each step is released exactly once.
fn release(
    dag: &cairn_model::Dag,
    i: usize,
    waiting_on: &mut [usize],
    ready: &mut BTreeSet<(usize, usize)>,
) {
    for c in dag.children(i) {
        waiting_on[c] = waiting_on[c].saturating_sub(1);
        if waiting_on[c] == 0 {
            ready.insert((dag.group[c], c));
        }
    }
}
