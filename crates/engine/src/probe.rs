//! `cairn plan --probe`: the rehearsal that follows the data. Walking the plan in order, a step
//! that only reads runs for real, and its result and outputs flow into the steps after it (their
//! templates and `when`); every other step is shown, never run. What counts as a read is decided
//! by construction, never by a guess:
//!
//! * SQL: one statement, a read by a real parse, every function it calls on an allowlist of
//!   functions without effects, no executable comment ([`cairn_steps::sql::reads`]), and run
//!   inside a READ ONLY transaction; anything else is shown "not probed: calls `X`" (or why);
//! * HTTP: `GET` and `HEAD`; Chroma: the read actions (`heartbeat`, `version`, `list`, `count`,
//!   `get`, `query`);
//! * shell and argv: only with `readonly: true`; `readonly: false` keeps any step from running;
//! * never: a step that needs a secret (a probe reads none), depends on a step that did not run,
//!   or is a `for_each`, `check`, `approval`, `wait`, `report` or `uses` step, or in `finally`.
//!
//! Each target's reachability is reported: a database answers `SELECT 1` (read only), an HTTP
//! or Chroma server answers at all.

use crate::context::StepView;
use crate::exec::{Attempt, Peers};
use crate::plan::{PlannedStep, Probing};
pub use crate::plan::{Probe, Reachability};
use crate::prepare::{Prepared, Renderer, ResolvedTarget};
use cairn_model::{Step, TargetKind};
use indexmap::IndexMap;
use serde_json::Value as Json;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Runs the reads of a plan. Holds its own runtime: the plan is walked synchronously.
pub struct Prober {
    rt: tokio::runtime::Runtime,
    peers: Peers,
    cancel: CancellationToken,
    /// For a step without `timeout`.
    pub default_timeout: Duration,
}

impl Prober {
    pub fn new(cancel: CancellationToken) -> std::io::Result<Prober> {
        Ok(Prober {
            rt: tokio::runtime::Runtime::new()?,
            peers: Peers::default(),
            cancel,
            default_timeout: Duration::from_secs(30),
        })
    }

    fn decide_and_run(&mut self, s: &Step, planned: &PlannedStep, r: &Renderer<'_>) -> Probe {
        if let Some(w) = &planned.when {
            match w.decision {
                "skip" => return Probe::skipped(format!("`when: {}` is false", w.expr)),
                "run" => {}
                _ => {
                    return Probe::shown(format!(
                        "`when` depends on {}, which did not run",
                        w.depends_on.as_deref().unwrap_or("a step")
                    ));
                }
            }
        }
        if let Err(why) = may_run(s, planned, r.targets) {
            return Probe::shown(why);
        }
        let Some(action) = planned.actions.first() else {
            return Probe::shown("nothing to run");
        };
        if self.cancel.is_cancelled() {
            return Probe::shown("the probe was interrupted");
        }
        let timeout = s
            .timeout
            .as_ref()
            .map_or(self.default_timeout, |t| t.value.0);
        let attempt = Attempt {
            // Reads only: no process output to mask.
            filter: None,
            log: None,
            timeout: Some(timeout),
            cancel: &self.cancel,
            targets: r.targets,
            read_only: true,
        };
        let started = Instant::now();
        let started_at = chrono::Utc::now();
        let result = self.rt.block_on(self.peers.perform(action, &attempt));
        let timing = crate::context::Timing {
            started_at: Some(started_at),
            finished_at: Some(chrono::Utc::now()),
        };
        let duration_ms = Some(started.elapsed().as_millis() as u64);
        match result {
            Ok(result) => {
                let with_result = Renderer {
                    templates: r.templates,
                    base: r.base,
                    targets: r.targets,
                    local: crate::context::Local {
                        result: Some(result.clone()),
                        ..crate::context::Local::default()
                    },
                };
                let mut outputs = serde_json::Map::new();
                for (k, v) in &s.outputs {
                    match with_result.value(&v.value, &format!("outputs.{k}")) {
                        Ok(v) => {
                            outputs.insert(k.clone(), v);
                        }
                        Err(e) => {
                            return Probe {
                                outcome: "ran",
                                why: "a read".into(),
                                result: Some(result),
                                outputs: None,
                                error: Some(e.to_string()),
                                duration_ms,
                            };
                        }
                    }
                }
                let outputs = Json::Object(outputs);
                r.base.steps.set(
                    &s.id.value,
                    &StepView {
                        status: "succeeded".into(),
                        result: result.clone(),
                        outputs: outputs.clone(),
                        error: None,
                        timing,
                    },
                );
                Probe {
                    outcome: "ran",
                    why: why_read(action),
                    result: Some(result),
                    outputs: Some(outputs),
                    error: None,
                    duration_ms,
                }
            }
            Err(e) => Probe {
                outcome: "ran",
                why: why_read(action),
                result: None,
                outputs: None,
                error: Some(e.to_string()),
                duration_ms,
            },
        }
    }

    /// Whether each target answers.
    pub fn reachability(
        &mut self,
        targets: &IndexMap<String, ResolvedTarget>,
    ) -> Vec<Reachability> {
        targets
            .values()
            .map(|t| {
                let (reachable, detail) = self.reach(t, targets);
                Reachability {
                    target: t.name.clone(),
                    kind: t.kind.as_str(),
                    reachable,
                    detail,
                }
            })
            .collect()
    }

    fn reach(
        &mut self,
        t: &ResolvedTarget,
        targets: &IndexMap<String, ResolvedTarget>,
    ) -> (Option<bool>, String) {
        if needs_secret(t) {
            return (
                None,
                "not checked: it needs a secret, which a probe never reads".into(),
            );
        }
        if t.url.starts_with('<') {
            return (
                None,
                "not checked: its URL is known only at run time".into(),
            );
        }
        let action = match t.kind {
            TargetKind::Postgres | TargetKind::Mysql | TargetKind::Sqlite => {
                if t.kind == TargetKind::Sqlite {
                    // Opening a missing SQLite file would create it.
                    let path = t
                        .url
                        .trim_start_matches("sqlite://")
                        .trim_start_matches("sqlite:");
                    let path = path.split('?').next().unwrap_or(path);
                    if path != ":memory:" && std::fs::metadata(path).is_err() {
                        return (Some(false), format!("{path} does not exist"));
                    }
                }
                Prepared::Sql {
                    target: t.name.clone(),
                    url: t.url.clone(),
                    sql: "SELECT 1".into(),
                    params: Vec::new(),
                    lexed: false,
                }
            }
            TargetKind::Http => Prepared::Http {
                method: "HEAD".into(),
                url: t.url.clone(),
                headers: t.headers.clone(),
                json: None,
                body: None,
                auth: None,
                insecure: t.insecure,
                follow_redirects: false,
                target: Some(t.name.clone()),
            },
            TargetKind::Chroma => Prepared::Chroma {
                target: t.name.clone(),
                url: t.url.clone(),
                action: "heartbeat".into(),
                params: Json::Null,
            },
        };
        let attempt = Attempt {
            // Reads only: no process output to mask.
            filter: None,
            log: None,
            timeout: Some(Duration::from_secs(10)),
            cancel: &self.cancel,
            targets,
            read_only: true,
        };
        let started = Instant::now();
        match self.rt.block_on(self.peers.perform(&action, &attempt)) {
            Ok(result) => {
                let status = result.get("status").and_then(Json::as_u64);
                let ms = started.elapsed().as_millis();
                (
                    Some(true),
                    match status {
                        Some(code) => format!("answered HTTP {code} in {ms} ms"),
                        None => format!("answered in {ms} ms"),
                    },
                )
            }
            Err(e) => (Some(false), e.to_string()),
        }
    }
}

fn needs_secret(t: &ResolvedTarget) -> bool {
    let masked = |x: &Option<String>| {
        x.as_deref()
            .is_some_and(|v| v.contains(cairn_template::MASK))
    };
    masked(&t.password)
        || masked(&t.bearer)
        || t.basic
            .as_ref()
            .is_some_and(|(u, p)| u.contains(cairn_template::MASK) || masked(p))
        || t.url.contains(cairn_template::MASK)
        || t.headers.values().any(|v| v.contains(cairn_template::MASK))
}

fn why_read(action: &Prepared) -> String {
    match action {
        Prepared::Sql { .. } => {
            "a read calling only allowlisted functions; run in a READ ONLY transaction".into()
        }
        Prepared::Http { method, .. } => format!("`{method}` is a read"),
        Prepared::Chroma { action, .. } => format!("`{action}` is a read"),
        _ => "marked `readonly: true`".into(),
    }
}

/// `Ok` when the step may run in a probe, else why not.
fn may_run(
    s: &Step,
    planned: &PlannedStep,
    targets: &IndexMap<String, ResolvedTarget>,
) -> Result<(), String> {
    if s.readonly == Some(false) {
        return Err("marked `readonly: false`".into());
    }
    if s.for_each.is_some() {
        return Err("a `for_each` step is shown, not probed".into());
    }
    let [action] = planned.actions.as_slice() else {
        return Err("more than one action".into());
    };
    let text = serde_json::to_string(action).unwrap_or_default();
    if text.contains("<steps.") || text.contains("<at run time") {
        return Err("depends on a step that did not run".into());
    }
    if text.contains(cairn_template::MASK) {
        return Err("uses a secret, which a probe never reads".into());
    }
    match action {
        Prepared::Sql { target, sql, .. } => {
            let t = targets
                .get(target)
                .ok_or_else(|| format!("unknown target `{target}`"))?;
            if needs_secret(t) {
                return Err(format!(
                    "target `{target}` needs a secret, which a probe never reads"
                ));
            }
            let driver = cairn_steps::sql::Driver::from_url(&t.url).map_err(|e| e.to_string())?;
            cairn_steps::sql::reads::check_read(driver, sql)
                .map_err(|why| format!("not probed: {why}"))
        }
        Prepared::Http { method, target, .. } => {
            if let Some(t) = target.as_ref().and_then(|n| targets.get(n))
                && needs_secret(t)
            {
                return Err(format!(
                    "target `{}` needs a secret, which a probe never reads",
                    t.name
                ));
            }
            match method.to_ascii_uppercase().as_str() {
                "GET" | "HEAD" => Ok(()),
                other => Err(format!("`{other}` is not a read")),
            }
        }
        Prepared::Chroma {
            target,
            action,
            params,
            ..
        } => {
            if targets.get(target).is_some_and(needs_secret) {
                return Err(format!(
                    "target `{target}` needs a secret, which a probe never reads"
                ));
            }
            let params = if params.is_null() {
                Json::Object(Default::default())
            } else {
                params.clone()
            };
            let parsed: Result<cairn_steps::chroma::ChromaAction, _> =
                serde_json::from_value(serde_json::json!({ action.as_str(): params }));
            match parsed {
                Ok(a) if a.is_read_only() => Ok(()),
                Ok(_) => Err(format!("chroma `{action}` is not a read")),
                Err(e) => Err(format!("chroma `{action}`: {e}")),
            }
        }
        Prepared::Shell { .. } | Prepared::Argv { .. } => {
            if s.readonly == Some(true) {
                Ok(())
            } else {
                Err("shell and argv steps run only when marked `readonly: true`".into())
            }
        }
        other => Err(format!("`{}` steps are shown", other.kind())),
    }
}

impl Probing for Prober {
    fn step(&mut self, s: &Step, planned: &mut PlannedStep, r: &Renderer<'_>) {
        planned.probe = Some(self.decide_and_run(s, planned, r));
    }

    fn reachability(&mut self, targets: &IndexMap<String, ResolvedTarget>) -> Vec<Reachability> {
        Prober::reachability(self, targets)
    }
}
