//! The names templates read: `inputs`, `vars`, `secrets`, `targets`, `env`, `run`, `steps`,
//! and, per step, `item`, `index`, `result` and `run.step_key`.
//!
//! Built once per run; each step's context is a small object over shared, reference-counted
//! parts, so a 10,000-step runbook does not copy the world 10,000 times.

use cairn_template::{Value, placeholder};
use minijinja::value::{Enumerator, Object, ObjectRepr};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What one finished (or skipped) step exposes as `steps.ID`.
#[derive(Clone, Debug)]
pub struct StepView {
    pub status: String,
    pub result: Json,
    pub outputs: Json,
    /// Why it failed, or why it did not run (skipped); `None` for a step that succeeded.
    pub error: Option<String>,
    pub timing: Timing,
}

/// When a step ran: `steps.ID.started_at`, `finished_at` (RFC 3339 UTC, milliseconds) and
/// `duration` (seconds, a number), so a report's timeline comes from the run itself. All three
/// are null for a step that never started (skipped by `when` or below a failure).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Timing {
    fn to_json(self) -> (Json, Json, Json) {
        let stamp = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map_or(Json::Null, |t| {
                Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            })
        };
        let duration = match (self.started_at, self.finished_at) {
            (Some(s), Some(f)) => {
                let ms = (f - s).num_milliseconds().max(0);
                // Milliseconds as a float of seconds, rounded to the millisecond.
                serde_json::Number::from_f64(ms as f64 / 1000.0).map_or(Json::Null, Json::Number)
            }
            _ => Json::Null,
        };
        (stamp(self.started_at), stamp(self.finished_at), duration)
    }
}

/// `steps`: finished steps by id; in a dry run, a placeholder for every step not run.
#[derive(Debug, Default)]
pub struct Steps {
    done: RwLock<HashMap<String, Value>>,
    dry_run: bool,
}

impl Steps {
    pub fn new(dry_run: bool) -> Self {
        Steps {
            done: RwLock::new(HashMap::new()),
            dry_run,
        }
    }

    /// Whether this is a dry run's `steps`, where a step not run reads as a placeholder.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn set(&self, id: &str, view: &StepView) {
        let (started_at, finished_at, duration) = view.timing.to_json();
        // A step that failed or did not run has no outputs: an empty map, so that
        // `steps.X.outputs.n | default('n/a')` renders in a report after a failure.
        let outputs = if view.outputs.is_null() {
            Json::Object(Default::default())
        } else {
            view.outputs.clone()
        };
        let v = value_of(&serde_json::json!({
            "status": view.status, "result": view.result, "outputs": outputs,
            "error": view.error,
            "started_at": started_at, "finished_at": finished_at, "duration": duration,
        }));
        if let Ok(mut m) = self.done.write() {
            m.insert(id.to_string(), v);
        }
    }
}

impl Object for Steps {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let id = key.as_str()?;
        let found = self.done.read().ok().and_then(|m| m.get(id).cloned());
        match found {
            Some(v) => Some(v),
            None if self.dry_run => Some(placeholder(&format!("steps.{id}"))),
            None => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Value> = self
            .done
            .read()
            .map(|m| m.keys().map(|k| Value::from(k.as_str())).collect())
            .unwrap_or_default();
        Enumerator::Values(keys)
    }
}

/// The parts of the context that are the same for every step of a run.
#[derive(Debug)]
pub struct Base {
    pub inputs: Value,
    pub vars: RwLock<Value>,
    pub secrets: Value,
    pub targets: RwLock<Value>,
    pub env: Value,
    /// `run` without `step_key`.
    pub run: Json,
    pub steps: Arc<Steps>,
}

impl Base {
    /// `hidden` names environment variables that read as `***` (a dry run's secret variables).
    pub fn new(
        inputs: &Json,
        secrets: Value,
        run: Json,
        dry_run: bool,
        hidden: &[String],
    ) -> Arc<Base> {
        let env: serde_json::Map<String, Json> = std::env::vars()
            .map(|(k, v)| {
                let v = if hidden.contains(&k) {
                    cairn_template::MASK.to_string()
                } else {
                    v
                };
                (k, Json::String(v))
            })
            .collect();
        Arc::new(Base {
            inputs: crate::context::value_of(inputs),
            vars: RwLock::new(crate::context::value_of(&serde_json::json!({}))),
            secrets,
            targets: RwLock::new(crate::context::value_of(&serde_json::json!({}))),
            env: crate::context::value_of(&env),
            run,
            steps: Arc::new(Steps::new(dry_run)),
        })
    }

    /// Whether this context belongs to a dry run (`run.dry_run`).
    pub fn dry_run(&self) -> bool {
        self.run["dry_run"].as_bool().unwrap_or(false)
    }

    pub fn set_vars(&self, vars: &serde_json::Map<String, Json>) {
        if let Ok(mut v) = self.vars.write() {
            *v = crate::context::value_of(vars);
        }
    }

    pub fn set_targets(&self, targets: &Json) {
        if let Ok(mut t) = self.targets.write() {
            *t = crate::context::value_of(targets);
        }
    }
}

/// One template's view: the base plus what is local to the step.
#[derive(Debug, Clone, Default)]
pub struct Local {
    pub item: Option<(Json, usize)>,
    /// A dry run of a `for_each` over a list not known before the run: `item` and `index` are
    /// placeholders named after this step id (`<ID.item.port>`).
    pub pending_item: Option<String>,
    pub result: Option<Json>,
    pub step_key: Option<String>,
}

#[derive(Debug)]
struct Ctx {
    base: Arc<Base>,
    local: Local,
}

const KEYS: &[&str] = &[
    "inputs", "vars", "secrets", "targets", "env", "run", "steps", "item", "index", "result",
];

impl Object for Ctx {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let b = &self.base;
        Some(match key.as_str()? {
            "inputs" => b.inputs.clone(),
            "vars" => b.vars.read().ok()?.clone(),
            "secrets" => b.secrets.clone(),
            "targets" => b.targets.read().ok()?.clone(),
            "env" => b.env.clone(),
            "steps" => Value::from_dyn_object(b.steps.clone()),
            "run" => {
                let mut run = b.run.clone();
                if let (Some(k), Some(o)) = (&self.local.step_key, run.as_object_mut()) {
                    o.insert("step_key".into(), Json::String(k.clone()));
                }
                crate::context::value_of(&run)
            }
            "item" => match (&self.local.item, &self.local.pending_item) {
                (Some((item, _)), _) => crate::context::value_of(item),
                (None, Some(id)) => placeholder(&format!("{id}.item")),
                (None, None) => return None,
            },
            "index" => match (&self.local.item, &self.local.pending_item) {
                (Some((_, index)), _) => Value::from(*index),
                (None, Some(id)) => placeholder(&format!("{id}.index")),
                (None, None) => return None,
            },
            "result" => crate::context::value_of(self.local.result.as_ref()?),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(KEYS)
    }
}

/// The context for one template.
pub fn context(base: &Arc<Base>, local: Local) -> Value {
    Value::from_object(Ctx {
        base: base.clone(),
        local,
    })
}

/// Any serializable value as a template value.
/// `run.dir`: the absolute folder of the runbook file, so a runbook can call the scripts and
/// files that sit beside it whatever folder Cairn runs in (shell steps run in Cairn's own).
pub fn runbook_dir(path: &std::path::Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    abs.parent()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| ".".into())
}

pub fn value_of(x: &impl serde::Serialize) -> Value {
    cairn_template::from_json(&serde_json::to_value(x).unwrap_or(Json::Null))
}
