//! The run's notices: the runbook's `notifiers:` (and those of a `CAIRN_NOTIFIERS` file),
//! rendered with the run's secrets, inputs and env, told what the engine's events say. A sink
//! beside the progress: it sees events after the masking door, so a notice carries nothing the
//! door would not let out, and it never holds up or fails the run (sends go in the background).

use cairn_engine::events::{Event, RunOutcome, Sink, Status};
use cairn_model::{Checked, NotifierOrigin, NotifiersFile, StepKind, Tmpl};
use cairn_notify::{Dispatcher, Notice, NotifierConfig, Renotify, RetryPolicy, Routes};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest a run's end waits for notices still being sent: the slowest notifier's
/// `timeout`, so a receiver that is down or silent delays the end by no more than that.
const MAX_SHUTDOWN: Duration = Duration::from_secs(10);

/// Passes every event on to `inner`, and sends the notices they call for.
pub struct Notifying {
    inner: Arc<dyn Sink>,
    dispatcher: Dispatcher,
    runbook: String,
    /// Each gate's own `notify:` list (by step id).
    gates: HashMap<String, Vec<String>>,
    renotify: Option<Duration>,
    /// Gates waiting in this process, and their repeating notice.
    waiting: Mutex<HashMap<String, Option<Renotify>>>,
    run_id: Mutex<String>,
    /// How long the end of the run waits for sends under way.
    shutdown: Duration,
}

/// The sink a run reports to: `progress`, wrapped in a [`Notifying`] when the runbook (or the
/// `CAIRN_NOTIFIERS` file) has notifiers. Settings that cannot be rendered (a missing secret)
/// are refused before the run starts.
#[allow(clippy::type_complexity)]
pub fn for_run(
    checked: &Checked,
    templates: &cairn_template::Templates,
    inputs: &Json,
    progress: Arc<dyn Sink>,
) -> Result<(Arc<dyn Sink>, Option<Arc<Notifying>>), String> {
    let file = cairn_model::notifiers_file_from_env(templates)
        .map_err(|e| format!("{}: {e}", cairn_model::NOTIFIERS_ENV))?;
    match setup(
        checked,
        templates,
        file.as_ref().map(|(f, _)| f),
        inputs,
        progress,
    )? {
        Ok(n) => Ok((n.clone() as Arc<dyn Sink>, Some(n))),
        Err(progress) => Ok((progress, None)),
    }
}

/// The notifiers of a runbook, ready to send; the sink back when it has none.
fn setup(
    checked: &Checked,
    templates: &cairn_template::Templates,
    file: Option<&NotifiersFile>,
    inputs: &Json,
    inner: Arc<dyn Sink>,
) -> Result<Result<Arc<Notifying>, Arc<dyn Sink>>, String> {
    let rb = &checked.runbook;
    let in_effect = cairn_model::notifiers_in_effect(rb, file);
    if in_effect.is_empty() {
        return Ok(Err(inner));
    }
    let env: serde_json::Map<String, Json> = std::env::vars()
        .map(|(k, v)| (k, Json::String(v)))
        .collect();
    let run_secrets = cairn_engine::secrets::read(rb).map_err(|e| e.join("; "))?;
    let file_secrets = match file {
        Some(f) => cairn_engine::secrets::read_declared(&f.secrets).map_err(|e| e.join("; "))?,
        None => Default::default(),
    };
    let mut masked: Vec<String> = Vec::new();
    let mut configs = Vec::new();
    for (name, (notifier, origin)) in in_effect {
        let ctx = match origin {
            NotifierOrigin::Runbook => serde_json::json!({
                "secrets": run_secrets, "inputs": inputs, "env": env,
            }),
            NotifierOrigin::File(_) => serde_json::json!({
                "secrets": file_secrets, "env": env,
            }),
        };
        let ctx = cairn_engine::context::value_of(&ctx);
        let render = |t: &Tmpl| {
            templates
                .render_text(&t.src, &ctx)
                .map_err(|e| e.to_string())
        };
        let config = NotifierConfig::from_model(name, notifier, render)
            .map_err(|e| format!("notifier `{name}`: {e}"))?;
        configs.push(config);
    }
    for v in run_secrets.values().chain(file_secrets.values()) {
        if let Some(s) = v.as_str() {
            masked.push(s.to_string());
        }
    }
    let shutdown = configs
        .iter()
        .map(|c| c.timeout)
        .max()
        .unwrap_or_default()
        .min(MAX_SHUTDOWN);
    let masker = cairn_engine::secrets::Masker::new(masked);
    let routes = rb
        .notify
        .as_ref()
        .map(Routes::from_model)
        .unwrap_or_default();
    let dispatcher = Dispatcher::new(configs, routes, RetryPolicy::default(), move |t: &str| {
        masker.mask(t)
    });
    let gates = checked
        .all_steps()
        .filter_map(|s| match &s.kind {
            StepKind::Approval(a) if !a.notify.is_empty() => Some((
                s.id.value.clone(),
                a.notify.iter().map(|n| n.value.clone()).collect(),
            )),
            _ => None,
        })
        .collect();
    Ok(Ok(Arc::new(Notifying {
        inner,
        dispatcher,
        runbook: rb.name.value.clone(),
        gates,
        renotify: rb
            .notify
            .as_ref()
            .and_then(|n| n.renotify.as_ref())
            .map(|d| d.value.0),
        waiting: Mutex::new(HashMap::new()),
        run_id: Mutex::new(String::new()),
        shutdown,
    })))
}

impl Notifying {
    /// Waits (at most a few seconds) for the notices still being sent, and says on stderr
    /// which could not be delivered.
    pub async fn finish(&self) {
        if let Ok(mut w) = self.waiting.lock() {
            w.clear();
        }
        let done = self.dispatcher.shutdown(self.shutdown).await;
        for d in done.deliveries.iter().filter(|d| !d.ok()) {
            tracing::warn!(notifier = %d.notifier, event = d.event.as_str(), attempt = d.attempt, error = ?d.error, "notice not delivered");
        }
        let failed: Vec<String> = done
            .deliveries
            .iter()
            .filter(|d| !d.ok())
            .map(|d| {
                format!(
                    "{} ({}, attempt {}): {}",
                    d.notifier,
                    d.event.as_str(),
                    d.attempt,
                    d.error.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        if !failed.is_empty() {
            crate::output::eprint_line(&format!(
                "warning: notices not delivered: {}",
                crate::output::escape_controls(&failed.join("; "))
            ));
        }
    }

    /// Sends a gate's notice to its route and to the gate's own `notify:` list (each notifier
    /// once); returns who was told.
    fn tell_gate(&self, step: &str, notice: &Notice) -> Vec<String> {
        let mut told = self.dispatcher.notify(notice);
        let own: Vec<String> = self
            .gates
            .get(step)
            .into_iter()
            .flatten()
            .filter(|n| !told.contains(n))
            .cloned()
            .collect();
        self.dispatcher.notify_names(&own, notice);
        told.extend(own);
        told
    }

    fn run_id(&self) -> String {
        self.run_id.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Sink for Notifying {
    fn emit(&self, event: &Event) {
        self.inner.emit(event);
        match event {
            Event::RunStarted { run_id, .. } => {
                if let Ok(mut r) = self.run_id.lock() {
                    *r = run_id.clone();
                }
            }
            Event::ApprovalWaiting {
                step,
                message,
                run_id,
                ..
            } => {
                let notice = Notice::gate_waiting(&self.runbook, run_id, step, message);
                let told = self.tell_gate(step, &notice);
                let repeat = self
                    .renotify
                    .filter(|_| !told.is_empty())
                    .map(|every| self.dispatcher.renotify(notice, every, Some(told)));
                if let Ok(mut w) = self.waiting.lock() {
                    w.insert(step.clone(), repeat);
                }
            }
            Event::ApprovalAnswered { step, approved, by } => {
                // Stops the repeating notice of a gate that waited in this process.
                if let Ok(mut w) = self.waiting.lock() {
                    w.remove(step);
                }
                let how = format!(
                    "{} by {by}",
                    if *approved { "approved" } else { "rejected" }
                );
                let notice = Notice::gate_answered(&self.runbook, self.run_id(), step, how);
                self.tell_gate(step, &notice);
            }
            Event::RunFinished {
                run_id,
                outcome,
                steps,
                ..
            } => {
                let kind = match outcome {
                    RunOutcome::Failed => cairn_notify::Event::Failed,
                    RunOutcome::Succeeded | RunOutcome::SucceededWithWarnings => {
                        cairn_notify::Event::Succeeded
                    }
                    RunOutcome::Paused => cairn_notify::Event::Paused,
                    RunOutcome::Interrupted => return,
                };
                // A run's notice is keyed by the run alone (its PagerDuty incident is the
                // run's, apart from any gate's); the message names the step.
                let message = match outcome {
                    RunOutcome::Failed => steps
                        .iter()
                        .find(|s| s.status == Status::Failed && s.error.is_some())
                        .map(|s| {
                            format!("step `{}`: {}", s.id, s.error.clone().unwrap_or_default())
                        })
                        .unwrap_or_else(|| "the run failed".into()),
                    RunOutcome::Paused => {
                        let gates: Vec<String> = steps
                            .iter()
                            .filter(|s| s.status == Status::Waiting)
                            .map(|s| format!("`{}`", s.id))
                            .collect();
                        format!("paused: {} waits for an answer", gates.join(", "))
                    }
                    _ => format!("run {}", outcome.as_str().replace('_', " ")),
                };
                let notice = Notice::new(kind, &self.runbook, run_id, None, message);
                self.dispatcher.notify(&notice);
            }
            _ => {}
        }
    }
}
