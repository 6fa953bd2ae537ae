//! A test case's fixtures behind the engine's two ports: [`Actions`] (what a shell, SQL, HTTP
//! or Chroma step, or a `wait`'s probe, gives) and [`StandIns`] (a gate's answers, a `uses`
//! step's sub-run). Everything around them (`when`, items, retries, `expect`, `outputs`,
//! `finally`, reports, the gate's rules and `on_reject`) is the engine's own path.

use cairn_engine::exec::{ActionPort, Actions, Attempt, Call, Peers};
use cairn_engine::gate::Answer;
use cairn_engine::prepare::Prepared;
use cairn_engine::stand_in::{ChildPorts, StandInPort, StandIns};
use cairn_model::testfile::{Fixtures, Given};
use cairn_model::{Checked, StepKind};
use cairn_steps::StepError;
use serde_json::Value as Json;
use std::sync::{Arc, Mutex};

/// What every scope of one case run shares.
pub struct CaseShared {
    /// Performs what has no fixture and may run for real (`readonly`, or a `live` case).
    pub real: Peers,
    pub templates: Arc<cairn_template::Templates>,
    pub live: bool,
    /// The second run of an `idempotent` case: a fixture's `again` stands when it has one.
    pub second: bool,
    /// Steps that were reached with no fixture and may not run for real.
    pub missing: Mutex<Vec<String>>,
    /// Steps (with their sub-run prefix) that something was performed for: given or real.
    pub performed: Mutex<Vec<String>>,
}

/// The fixtures of one runbook in a case run (the top-level one, or a sub-run's).
pub struct Scope {
    pub shared: Arc<CaseShared>,
    pub checked: Arc<Checked>,
    pub fixtures: Fixtures,
    /// `deploy/` for a sub-run of step `deploy`; empty at the top.
    pub prefix: String,
    /// How many times each (step, item) was performed in this run.
    pub calls: Mutex<std::collections::HashMap<(String, Option<usize>), usize>>,
}

impl Scope {
    pub fn ports(self: &Arc<Self>) -> (ActionPort, StandInPort) {
        (ActionPort(self.clone()), StandInPort(self.clone()))
    }

    /// The fixture standing for this call, down to one leaf (`items` chosen by the item,
    /// `attempts` by how many times the step (item) was performed before: an attempt, or a
    /// `wait`'s poll).
    fn leaf(&self, call: &Call<'_>) -> Option<&Given> {
        let f = self.fixtures.0.get(call.step)?;
        let n = match self.calls.lock() {
            Ok(mut calls) => {
                let c = calls.entry((call.step.to_string(), call.item)).or_insert(0);
                *c += 1;
                *c - 1
            }
            Err(_) => call.attempt.saturating_sub(1) as usize,
        };
        let mut g = match (&f.again, self.shared.second) {
            (Some(again), true) => again,
            _ => &f.given,
        };
        loop {
            g = match g {
                Given::Items(all) => pick(all, call.item.unwrap_or(0))?,
                Given::Attempts(all) => pick(all, n)?,
                leaf => return Some(leaf),
            };
        }
    }

    fn note(&self, list: &Mutex<Vec<String>>, step: &str) {
        if let Ok(mut l) = list.lock() {
            let key = format!("{}{step}", self.prefix);
            if !l.contains(&key) {
                l.push(key);
            }
        }
    }
}

fn pick(all: &[Given], i: usize) -> Option<&Given> {
    all.get(i).or_else(|| all.last())
}

/// A fixture's result completed to its kind's full shape, so that templates reading a field
/// the fixture left out see the value an ordinary run would give.
pub fn complete(kind: &str, given: Json) -> Json {
    let mut base = match kind {
        "shell" | "argv" => serde_json::json!({
            "exit_code": 0, "stdout": "", "stderr": "", "stdout_truncated": false,
            "stderr_truncated": false, "duration_ms": 0,
        }),
        "http" => serde_json::json!({
            "status": 200, "headers": {}, "body": "", "body_truncated": false, "json": null,
            "url": "", "duration_ms": 0,
        }),
        "sql" => serde_json::json!({
            "rows": [], "rows_affected": 0, "notices": [], "notices_truncated": false,
            "duration_ms": 0,
        }),
        _ => return given,
    };
    if let (Some(b), Json::Object(g)) = (base.as_object_mut(), &given) {
        for (k, v) in g {
            b.insert(k.clone(), v.clone());
        }
    }
    if kind == "sql" {
        let n = base["rows"].as_array().map_or(0, Vec::len);
        if given.get("row_count").is_none() {
            base["row_count"] = Json::from(n);
        }
    }
    if kind == "http" && given.get("body").is_none() && !base["json"].is_null() {
        base["body"] = Json::String(base["json"].to_string());
    }
    base
}

#[async_trait::async_trait]
impl Actions for Scope {
    async fn perform(
        &self,
        call: &Call<'_>,
        action: &Prepared,
        a: &Attempt<'_>,
    ) -> Result<Json, StepError> {
        match self.leaf(call) {
            Some(Given::Result(node)) => {
                self.note(&self.shared.performed, call.step);
                let kind = action.kind();
                let result = complete(kind, cairn_model::yaml_node_json(node));
                let code = result["exit_code"].as_i64().unwrap_or(0);
                if matches!(kind, "shell" | "argv") && code != 0 {
                    let stderr = result["stderr"].as_str().unwrap_or_default().trim();
                    let msg = if stderr.is_empty() {
                        format!("exit {code}")
                    } else {
                        format!("exit {code}: {stderr}")
                    };
                    return Err(StepError::failed(msg, Some(result)));
                }
                Ok(result)
            }
            Some(Given::Fail { error, result }) => {
                self.note(&self.shared.performed, call.step);
                let result = result
                    .as_ref()
                    .map(|n| complete(action.kind(), cairn_model::yaml_node_json(n)));
                Err(StepError::failed(error.value.clone(), result))
            }
            Some(_) => Err(StepError::setup(format!(
                "the fixture of `{}` does not fit a `{}` step",
                call.step,
                action.kind()
            ))),
            None => {
                let readonly = self
                    .checked
                    .all_steps()
                    .find(|s| s.id.value == call.step)
                    .and_then(|s| s.readonly)
                    .unwrap_or(false);
                if readonly || self.shared.live {
                    self.note(&self.shared.performed, call.step);
                    return self.shared.real.perform(action, a).await;
                }
                self.note(&self.shared.missing, call.step);
                Err(StepError::setup(format!(
                    "step `{}{}` has no fixture",
                    self.prefix, call.step
                )))
            }
        }
    }

    async fn close(&self) {
        // The real connections are the case's, closed once its runs are over.
    }
}

impl StandIns for Scope {
    fn pause(&self, _planned: std::time::Duration) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    fn answers(&self, call: &Call<'_>) -> Option<Vec<Answer>> {
        match self.leaf(call)? {
            Given::Approve { approved, by, .. } => {
                Some(by.iter().map(|b| Answer::new(*approved, b)).collect())
            }
            _ => None,
        }
    }

    fn sub_run(&self, call: &Call<'_>) -> Option<Result<Json, StepError>> {
        match self.leaf(call)? {
            Given::Result(node) => {
                self.note(&self.shared.performed, call.step);
                Some(Ok(cairn_model::yaml_node_json(node)))
            }
            Given::Fail { error, result } => {
                self.note(&self.shared.performed, call.step);
                let result = result.as_ref().map(cairn_model::yaml_node_json);
                Some(Err(StepError::failed(error.value.clone(), result)))
            }
            _ => None,
        }
    }

    fn child(&self, parent_step: &str) -> Option<ChildPorts> {
        let id = parent_step.split('[').next().unwrap_or(parent_step);
        let step = self.checked.all_steps().find(|s| s.id.value == id)?;
        let StepKind::Uses(u) = &step.kind else {
            return None;
        };
        let base = self
            .checked
            .runbook
            .path
            .parent()
            .unwrap_or(std::path::Path::new("."));
        let (child, _) =
            cairn_model::load(&base.join(&u.path.value), &self.shared.templates).ok()?;
        let fixtures = match self.fixtures.0.get(id).map(|f| &f.given) {
            Some(Given::Sub(fx)) => fx.clone(),
            _ => Fixtures::default(),
        };
        let scope = Arc::new(Scope {
            shared: self.shared.clone(),
            checked: Arc::new(child),
            fixtures,
            prefix: format!("{}{parent_step}/", self.prefix),
            calls: Default::default(),
        });
        let (actions, stand_ins) = scope.ports();
        Some(ChildPorts {
            stand_ins,
            actions: Some(actions),
        })
    }
}
