//! What each page shows, as JSON: the API answers with it, and the page renders the same
//! value through its template. One reading of the store for both, so they cannot disagree.

use std::sync::Arc;

use cairn_engine::events::outcome_word;
use cairn_engine::warnings::check_warnings;
use cairn_state::{
    ListedRun, RunCursor, RunFilter, RunRecord, RunStatus, StateError, StepRecord, StepStatus,
    Store,
};
use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

/// The most runs one page of the history lists.
pub const MAX_PAGE: u32 = 200;

fn time(t: Option<DateTime<Utc>>) -> Json {
    t.map_or(Json::Null, |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into()
    })
}

fn seconds(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Json {
    match (a, b) {
        (Some(a), Some(b)) => json!(((b - a).num_milliseconds() as f64) / 1000.0),
        _ => Json::Null,
    }
}

/// A cursor as it travels in a URL: `TIME~ID`, opaque to the client.
pub fn cursor_text(c: &RunCursor) -> String {
    format!(
        "{}~{}",
        c.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        c.id
    )
}

pub fn parse_cursor(s: &str) -> Option<RunCursor> {
    let (t, id) = s.split_once('~')?;
    let started_at = DateTime::parse_from_rfc3339(t).ok()?.with_timezone(&Utc);
    (!id.is_empty() && id.len() <= 64).then(|| RunCursor {
        started_at,
        id: id.to_string(),
    })
}

/// One run as listed.
pub fn run_row(r: &RunRecord, outcome: &str) -> Json {
    json!({
        "id": r.id,
        "runbook": r.runbook,
        "status": r.status.as_str(),
        "outcome": outcome,
        "unconfirmed": r.unconfirmed.is_some(),
        "started_at": time(Some(r.started_at)),
        "finished_at": time(r.finished_at),
        "duration_s": seconds(Some(r.started_at), Some(r.finished_at.unwrap_or(r.heartbeat_at))),
        "attempt": r.attempt,
        "user": r.user,
        "host": r.host,
        "parent_run": r.parent_run,
        "labels": r.labels,
    })
}

/// `team=memory,kind=backup`, the label filter as a URL or form gives it: every pair must
/// match. `None` with the reason for anything else.
pub fn parse_label_filter(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!(
                "`label` is KEY=VALUE[,KEY=VALUE...], not `{}`",
                crate::pages::visible(pair)
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err("`label`: a label has a key".to_string());
        }
        if out.iter().any(|(have, _)| have == k) {
            return Err(format!(
                "`label`: `{}` is given twice",
                crate::pages::visible(k)
            ));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// A page of the run history: `{runs, next}`, `next` the cursor of the following page.
pub async fn runs_page(
    store: &Arc<dyn Store>,
    runbook: Option<String>,
    status: Option<RunStatus>,
    labels: Vec<(String, String)>,
    after: Option<RunCursor>,
    limit: u32,
) -> Result<Json, StateError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let label_text = (!labels.is_empty()).then(|| {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    // One more than shown tells whether there is a next page.
    let rows = store
        .list_runs_page(
            &RunFilter {
                runbook: runbook.clone(),
                status,
                labels,
                limit: Some(limit + 1),
            },
            after.as_ref(),
        )
        .await?;
    let more = rows.len() > limit as usize;
    let mut runs = Vec::new();
    let mut last = None;
    for row in rows.into_iter().take(limit as usize) {
        match row {
            // The status as stored: whether a succeeded run had warnings is read from its
            // steps, which the run's page does; a page of the history reads no step.
            ListedRun::Run(r) => {
                runs.push(run_row(&r, r.status.as_str()));
                last = Some(RunCursor::after(&r));
            }
            ListedRun::Unreadable { id, reason } => {
                runs.push(json!({ "id": id, "status": "unreadable", "outcome": "unreadable", "error": reason }));
            }
        }
    }
    Ok(json!({
        "runs": runs,
        "next": if more { last.as_ref().map(cursor_text) } else { None },
        "filter": {
            "runbook": runbook,
            "status": status.map(RunStatus::as_str),
            "label": label_text,
            "before": after.as_ref().filter(|c| c.id.is_empty()).map(|c| time(Some(c.started_at))),
        },
    }))
}

/// The status a page shows for a step: one recorded running in a run that is not running was
/// cut off mid-action.
fn step_status(s: &StepRecord, run: &RunRecord) -> &'static str {
    if s.status == StepStatus::Running && run.status != RunStatus::Running {
        "in_doubt"
    } else {
        s.status.as_str()
    }
}

fn step_json(s: &StepRecord, run: &RunRecord) -> Json {
    json!({
        "step_id": s.step_id,
        "item": s.item,
        "status": step_status(s, run),
        "attempt": s.attempt,
        "started_at": time(s.started_at),
        "finished_at": time(s.finished_at),
        "duration_s": seconds(s.started_at, s.finished_at),
        "outputs": s.outputs,
        "result": s.result,
        "error": s.error,
        "has_log": s.log_path.is_some() || s.status == StepStatus::Running,
    })
}

/// A waiting gate and its rules, as shown to someone who may answer it.
fn gate_json(
    run_id: &str,
    runbook: &str,
    starter: &str,
    labels: &std::collections::BTreeMap<String, String>,
    s: &StepRecord,
) -> Json {
    let rules = s
        .result
        .as_ref()
        .and_then(cairn_engine::gate::Rules::from_result);
    json!({
        "run_id": run_id,
        "runbook": runbook,
        "step_id": s.step_id,
        "waiting_since": time(s.started_at),
        "message": s.result.as_ref().and_then(|r| r.get("message")).cloned(),
        "rules": rules.as_ref().map(cairn_engine::gate::Rules::describe),
        "deadline": time(rules.as_ref().and_then(|r| r.deadline)),
        "starter": starter,
        "labels": labels,
    })
}

/// Everything about one run: the run, its steps (each with its `for_each` items), its gates
/// waiting, the answers given and the actions taken on it.
pub async fn run_detail(store: &Arc<dyn Store>, run: &RunRecord) -> Result<Json, StateError> {
    let steps = store.steps(&run.id).await?;
    let approvals = store.approvals(&run.id).await?;
    let actions = store.actions(&run.id).await?;
    let warnings = if run.status == RunStatus::Succeeded {
        check_warnings(&steps, |_| None)
    } else {
        Vec::new()
    };
    let outcome = outcome_word(run.status, &warnings);
    let mut items: std::collections::HashMap<&str, Vec<Json>> = std::collections::HashMap::new();
    for i in steps.iter().filter(|s| s.item.is_some()) {
        items
            .entry(i.step_id.as_str())
            .or_default()
            .push(step_json(i, run));
    }
    let mut list: Vec<Json> = Vec::new();
    for s in steps.iter().filter(|s| s.item.is_none()) {
        let mut v = step_json(s, run);
        v["items"] = items.remove(s.step_id.as_str()).unwrap_or_default().into();
        list.push(v);
    }
    let waiting: Vec<Json> = steps
        .iter()
        .filter(|s| s.item.is_none() && s.status == StepStatus::Waiting)
        // A `uses` step waits for a gate of its sub-run: that gate is answered there.
        .filter(|s| s.result.as_ref().and_then(|r| r.get("run_id")).is_none())
        .map(|s| gate_json(&run.id, &run.runbook, &run.user, &run.labels, s))
        .collect();
    let mut head = run_row(run, &outcome);
    head["path"] = run.path.clone().into();
    head["inputs"] = run.inputs.clone();
    head["outputs"] = run.outputs.clone().unwrap_or(Json::Null);
    head["error"] = run.error.clone().into();
    head["parent_step"] = run.parent_step.clone().into();
    Ok(json!({
        "run": head,
        "warnings": warnings,
        "steps": list,
        "waiting": waiting,
        "approvals": approvals,
        "actions": actions,
    }))
}

/// The gates waiting for an answer across runs, oldest first.
pub async fn waiting_gates(store: &Arc<dyn Store>) -> Result<Json, StateError> {
    // One statement for every gate of every paused run (the store's index), oldest first. A
    // `uses` step waiting for its sub-run's gate is not a gate: the sub-run's step is listed.
    let gates: Vec<Json> = store
        .waiting_gates(1000)
        .await?
        .iter()
        .filter(|g| {
            g.step
                .result
                .as_ref()
                .and_then(|r| r.get("run_id"))
                .is_none()
        })
        .map(|g| gate_json(&g.step.run_id, &g.runbook, &g.starter, &g.labels, &g.step))
        .collect();
    Ok(json!({ "gates": gates }))
}

/// One step's records (the step and its items) and its log's place.
pub fn step_detail(run: &RunRecord, steps: &[StepRecord], step: &str) -> Option<Json> {
    let mine: Vec<Json> = steps
        .iter()
        .filter(|s| s.step_id == step)
        .map(|s| step_json(s, run))
        .collect();
    (!mine.is_empty()).then(|| {
        json!({
            "run": run_row(run, run.status.as_str()),
            "step_id": step,
            "records": mine,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = RunCursor {
            started_at: cairn_state::now(),
            id: "01J9Z".into(),
        };
        assert_eq!(parse_cursor(&cursor_text(&c)), Some(c));
        for junk in ["", "~", "x~y", "2026-01-01T00:00:00Z~", "nonsense"] {
            assert_eq!(parse_cursor(junk), None, "{junk}");
        }
    }
}
