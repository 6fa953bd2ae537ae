//! The dry-run: every step in execution order with its group and its fully rendered action,
//! `when` decided where the inputs decide it, placeholders for what only a run can know, and
//! secrets as `***`. No process, connection, file or state is touched.

use crate::action::StepAction;
use crate::context::{Base, Local};
use crate::prepare::{Prepared, RenderError, Renderer, ResolvedTarget, fmt_dur};
use cairn_model::{Checked, OnFailure, Runbook, Step, TValue, TargetKind};
use cairn_template::{MASK, Templates};
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value as Json;
use std::sync::Arc;

/// What the user gave on the command line.
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    pub sets: Vec<(String, String)>,
    pub inputs_file: Option<serde_json::Map<String, Json>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("invalid inputs:\n  {}", .0.join("\n  "))]
    Inputs(Vec<String>),
    #[error("cannot render {what}: {source}")]
    Render { what: String, source: RenderError },
    #[error(transparent)]
    Masking(#[from] crate::secrets::MaskError),
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub runbook: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto: Option<String>,
    pub inputs: IndexMap<String, Json>,
    pub vars: serde_json::Map<String, Json>,
    pub targets: IndexMap<String, PlannedTarget>,
    pub steps: Vec<PlannedStep>,
    pub finally: Vec<PlannedStep>,
    pub outputs: IndexMap<String, Json>,
    /// What a run would refuse or stumble on that the dry-run itself does not need (secrets
    /// not present on this machine).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `plan --probe`: whether each target answered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reachability: Vec<Reachability>,
    /// Who hears what (`notify.on`): event -> the runbook's notifier names (each gate's own
    /// `notify:` is shown with the gate).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub notify: IndexMap<String, Vec<String>>,
    /// The masks of this plan: the secrets read by the run's reader (those present here) and
    /// the targets' credentials, as a run would mask them. Everything printed of the plan
    /// leaves through it.
    #[serde(skip)]
    pub door: crate::masking::Door,
}

#[derive(Debug, Serialize)]
pub struct PlannedTarget {
    pub kind: &'static str,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct PlannedStep {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kind: &'static str,
    /// Steps in one group can run side by side; a group starts when what it needs is done.
    pub group: usize,
    pub needs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_failure: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub not_idempotent: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
    /// A `finally` step held back while the run has failed (`keep_for_resume: true`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_for_resume: bool,
    /// `for_each`: the items, or the placeholder they come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_each: Option<Json>,
    /// One action, or one per item.
    pub actions: Vec<Prepared>,
    /// `plan --probe`: whether the step ran for real, was only shown, or was skipped, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
}

#[derive(Debug, Serialize)]
pub struct When {
    pub expr: String,
    /// `run`, `skip`, or `at run time` when it depends on a step's result.
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<String>,
}

/// Dry-run a checked runbook.
pub fn plan(
    checked: &Checked,
    templates: &Templates,
    inv: &Invocation,
    now: DateTime<Utc>,
) -> Result<Plan, PlanError> {
    plan_with(checked, templates, inv, now, None)
}

/// Dry-run a checked runbook; `probe` (see [`crate::probe`]) may run steps that only read, in
/// order, so that their real results flow into the steps after them.
pub fn plan_with(
    checked: &Checked,
    templates: &Templates,
    inv: &Invocation,
    now: DateTime<Utc>,
    mut probe: Option<&mut dyn Probing>,
) -> Result<Plan, PlanError> {
    let rb = &checked.runbook;
    // The run's own reader and masks: a FIFO, a device or an oversized file is refused the
    // same way, and what is read is masked in the plan (a dry run renders secrets as `***`).
    let (secret_values, secret_problems) = crate::secrets::read_each(&rb.secrets);
    let mut masker =
        crate::masking::run_masker(&secret_values, &crate::options::RunOptions::default());
    drop(secret_values);
    let early = crate::masking::Door::new(masker.clone());
    let inputs = crate::inputs::resolve(rb, &inv.sets, inv.inputs_file.as_ref())
        .map_err(|e| masked(&early, PlanError::Inputs(e)))?;
    let secrets: serde_json::Map<String, Json> = rb
        .secrets
        .keys()
        .map(|k| (k.clone(), Json::String(MASK.into())))
        .collect();
    let run = serde_json::json!({
        "id": "dry-run", "started_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "attempt": 1, "runbook": rb.name.value, "dry_run": true,
        "dir": crate::context::runbook_dir(&rb.path),
    });
    let base = Base::new(
        &serde_json::to_value(&inputs).unwrap_or_default(),
        crate::context::value_of(&secrets),
        run,
        true,
        // `env.X` of a secret's variable is the secret: a dry run shows it as `***`.
        &rb.secrets
            .values()
            .filter_map(|s| s.env.clone())
            .collect::<Vec<_>>(),
    );
    let targets = IndexMap::new();
    let vars = eval_vars(rb, templates, &base, &targets)
        .map_err(|(what, source)| masked(&early, PlanError::Render { what, source }))?;
    let targets = resolve_targets(rb, templates, &base)
        .map_err(|(what, source)| masked(&early, PlanError::Render { what, source }))?;
    crate::masking::mask_credentials(&mut masker, &targets);
    masker.check()?;
    let door = crate::masking::Door::new(masker);
    let planned_targets = targets
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                PlannedTarget {
                    kind: t.kind.as_str(),
                    url: cairn_url::redact(&t.url),
                },
            )
        })
        .collect();
    let r = |local| Renderer {
        templates,
        base: &base,
        targets: &targets,
        local,
    };
    let mut steps = Vec::with_capacity(rb.steps.len());
    for &i in &checked.dag.order {
        let s = &rb.steps[i];
        let needs = checked
            .dag
            .parents(i)
            .into_iter()
            .map(|p| rb.steps[p].id.value.clone())
            .collect();
        let mut planned = plan_step(rb, s, checked.dag.group[i], needs, &r).map_err(|source| {
            masked(
                &door,
                PlanError::Render {
                    what: format!("step `{}`", s.id.value),
                    source,
                },
            )
        })?;
        if let Some(p) = probe.as_deref_mut() {
            p.step(s, &mut planned, &r(Local::default()));
        }
        steps.push(planned);
    }
    let mut finally = Vec::new();
    let last_group = checked.dag.group.iter().max().map_or(0, |g| g + 1);
    for (k, s) in rb.finally.iter().enumerate() {
        let needs = if k == 0 {
            vec![]
        } else {
            vec![rb.finally[k - 1].id.value.clone()]
        };
        let mut planned = plan_step(rb, s, last_group + k, needs, &r).map_err(|source| {
            masked(
                &door,
                PlanError::Render {
                    what: format!("step `{}`", s.id.value),
                    source,
                },
            )
        })?;
        if probe.is_some() {
            planned.probe = Some(Probe::shown(
                "`finally` steps are shown, never run by a probe",
            ));
        }
        finally.push(planned);
    }
    let renderer = r(Local::default());
    let outputs = rb
        .outputs
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                renderer.value(&v.value, &format!("outputs.{k}"))?,
            ))
        })
        .collect::<Result<_, RenderError>>()
        .map_err(|source| {
            masked(
                &door,
                PlanError::Render {
                    what: "outputs".into(),
                    source,
                },
            )
        })?;
    Ok(Plan {
        runbook: rb.name.value.clone(),
        path: rb.path.display().to_string(),
        rto: rb.rto.as_ref().map(|d| fmt_dur(d.value.0)),
        inputs,
        vars,
        targets: planned_targets,
        steps,
        finally,
        outputs,
        // What a run would refuse for, as the run's reader says it.
        warnings: secret_problems
            .into_iter()
            .map(|p| format!("{p}; a run would refuse to start"))
            .collect(),
        reachability: probe.map(|p| p.reachability(&targets)).unwrap_or_default(),
        notify: notify_routes(rb),
        door,
    })
}

/// Vars, in order, each seeing the ones before it.
/// `notify.on` as event -> notifier names, the events nobody hears left out.
fn notify_routes(rb: &cairn_model::Runbook) -> IndexMap<String, Vec<String>> {
    use cairn_model::NotifyEvent as E;
    let Some(n) = &rb.notify else {
        return IndexMap::new();
    };
    [
        ("waiting", E::Waiting),
        ("failed", E::Failed),
        ("succeeded", E::Succeeded),
        ("paused", E::Paused),
    ]
    .into_iter()
    .map(|(k, e)| {
        let names: Vec<String> = n.on.names(e).iter().map(|s| s.value.clone()).collect();
        (k.to_string(), names)
    })
    .filter(|(_, names)| !names.is_empty())
    .collect()
}

pub fn eval_vars(
    rb: &Runbook,
    templates: &Templates,
    base: &Arc<Base>,
    targets: &IndexMap<String, ResolvedTarget>,
) -> Result<serde_json::Map<String, Json>, (String, RenderError)> {
    let mut vars = serde_json::Map::new();
    for (k, v) in &rb.vars {
        let r = Renderer {
            templates,
            base,
            targets,
            local: Local::default(),
        };
        let value = r
            .value(&v.value, &format!("vars.{k}"))
            .map_err(|e| (format!("vars.{k}"), e))?;
        vars.insert(k.clone(), value);
        base.set_vars(&vars);
    }
    Ok(vars)
}

/// Targets rendered once; `targets.NAME` in templates gives `{url, kind, name}`.
pub fn resolve_targets(
    rb: &Runbook,
    templates: &Templates,
    base: &Arc<Base>,
) -> Result<IndexMap<String, ResolvedTarget>, (String, RenderError)> {
    let empty = IndexMap::new();
    let r = Renderer {
        templates,
        base,
        targets: &empty,
        local: Local::default(),
    };
    let mut out = IndexMap::new();
    for (name, t) in &rb.targets {
        let what = |f: &str| format!("targets.{name}.{f}");
        let (kind, url) = t.kind();
        let text = |x: &Option<cairn_model::Tmpl>, f: &str| {
            x.as_ref()
                .map(|v| r.text(v, &what(f)).map_err(|e| (what(f), e)))
                .transpose()
        };
        let resolved = ResolvedTarget {
            name: name.clone(),
            kind,
            url: target_url(
                kind,
                &r.text(url, &what("url")).map_err(|e| (what("url"), e))?,
            )
            .map_err(|m| {
                (
                    what("url"),
                    RenderError {
                        field: what("url"),
                        message: m,
                        undecided: None,
                        line: Some(url.span.line),
                    },
                )
            })?,
            password: text(&t.password, "password")?,
            bearer: text(&t.bearer, "bearer")?,
            basic: match &t.basic {
                Some(b) => Some((
                    r.text(&b.username, &what("basic"))
                        .map_err(|e| (what("basic"), e))?,
                    text(&b.password, "basic")?,
                )),
                None => None,
            },
            headers: t
                .headers
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        r.text(v, &what("headers"))
                            .map_err(|e| (what("headers"), e))?,
                    ))
                })
                .collect::<Result<_, (String, RenderError)>>()?,
            insecure: t.insecure.unwrap_or(false),
            tenant: text(&t.tenant, "tenant")?,
            database: text(&t.database, "database")?,
        };
        out.insert(name.clone(), resolved);
    }
    // `targets.NAME.url` never carries a password: give it with `password:` (or PGPASSWORD).
    let view: serde_json::Map<String, Json> = out
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                serde_json::json!({ "url": cairn_url::redact(&t.url), "kind": t.kind.as_str(), "name": k }),
            )
        })
        .collect();
    base.set_targets(&Json::Object(view));
    Ok(out)
}

/// The URL checked against the target's kind: `postgres:` needs a postgres:// URL, and so on,
/// because the kind decides the SQL placeholder style. A bare path is fine for `sqlite:`.
fn target_url(kind: TargetKind, url: &str) -> Result<String, String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let ok = match (kind, scheme.as_deref()) {
        (TargetKind::Postgres, Some("postgres" | "postgresql")) => true,
        (TargetKind::Mysql, Some("mysql" | "mariadb")) => true,
        (TargetKind::Sqlite, Some("sqlite")) => true,
        (TargetKind::Sqlite, None) if url.starts_with("sqlite:") => true,
        (TargetKind::Sqlite, None) => return Ok(format!("sqlite://{url}")),
        (TargetKind::Http | TargetKind::Chroma, Some("http" | "https")) => true,
        // A dry-run placeholder or masked value: decided at run time.
        (_, None) if url.starts_with('<') || url.contains(cairn_template::MASK) => true,
        _ => false,
    };
    if ok {
        Ok(url.to_string())
    } else {
        Err(format!(
            "a `{}` target needs a {} URL, got `{}`",
            kind.as_str(),
            match kind {
                TargetKind::Postgres => "postgres://",
                TargetKind::Mysql => "mysql://",
                TargetKind::Sqlite => "sqlite:// (or a file path)",
                TargetKind::Http | TargetKind::Chroma => "http:// or https://",
            },
            cairn_url::redact(url)
        ))
    }
}

pub(crate) fn plan_step<'a>(
    rb: &Runbook,
    s: &Step,
    group: usize,
    needs: Vec<String>,
    r: &dyn Fn(Local) -> Renderer<'a>,
) -> Result<PlannedStep, RenderError> {
    let action = StepAction::of(rb, s);
    let plain = r(Local {
        step_key: Some(format!("dry-run:{}", s.id.value)),
        ..Local::default()
    });
    let when = match &action.when {
        None => None,
        Some(w) => Some(match w.eval(&plain, "when") {
            Ok(yes) => When {
                expr: w.src().to_string(),
                decision: if yes { "run" } else { "skip" },
                depends_on: None,
            },
            Err(e) if e.undecided.is_some() => When {
                expr: w.src().to_string(),
                decision: "at run time",
                depends_on: e.undecided,
            },
            Err(e) => return Err(e),
        }),
    };
    let (for_each, items) = match &s.for_each {
        None => (None, None),
        Some(fe) => match unknown_list(&plain, &fe.value) {
            // The items come from a step that has not run.
            Some(shown) => (Some(Json::String(shown)), Some(None)),
            None => {
                let v = plain.value(&fe.value, "for_each")?;
                match v {
                    Json::Array(ref items) => (Some(v.clone()), Some(Some(items.clone()))),
                    other => {
                        return Err(RenderError {
                            field: "for_each".into(),
                            message: format!("expected a list, got {other}"),
                            undecided: None,
                            line: Some(fe.span.line),
                        });
                    }
                }
            }
        },
    };
    let actions = match items {
        None => vec![plain.prepare(s)?],
        Some(None) => {
            // Show the action once, with `item` and `index` as placeholders.
            let local = Local {
                pending_item: Some(s.id.value.clone()),
                step_key: plain.local.step_key.clone(),
                ..Local::default()
            };
            vec![r(local).prepare(s)?]
        }
        Some(Some(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                r(Local {
                    item: Some((item, i)),
                    step_key: Some(format!("dry-run:{}:{i}", s.id.value)),
                    ..Local::default()
                })
                .prepare(s)
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(PlannedStep {
        id: s.id.value.clone(),
        name: s.name.clone(),
        kind: action.kind,
        group,
        needs,
        when,
        // A templated timeout as the run would render it; as written when it cannot be yet.
        timeout: plain
            .timeout(action.timeout, action.timeout_template.as_ref())
            .map_or_else(
                |_| {
                    action
                        .timeout_template
                        .as_ref()
                        .map(|t| t.src.trim().to_string())
                },
                |t| t.map(fmt_dur),
            ),
        retry: action.retry.shown(),
        continue_on_failure: action.on_failure == OnFailure::Continue,
        not_idempotent: !action.idempotent,
        readonly: s.readonly.unwrap_or(false),
        keep_for_resume: s.keep_for_resume(),
        for_each,
        actions,
        probe: None,
    })
}

/// A `for_each` list that a dry run cannot know (it is, or is computed from, the output of a
/// step that has not run): how to show it.
fn unknown_list(r: &Renderer<'_>, v: &TValue) -> Option<String> {
    let TValue::Str(t) = v else { return None };
    if !crate::prepare::has_template(&t.src) {
        return None;
    }
    match r.templates.render_value(&t.src, &r.context()) {
        Ok(value) => cairn_template::is_placeholder(&value).map(|p| format!("<{p}>")),
        Err(e) => e
            .undecided()
            .map(|p| crate::prepare::unknown_text(p, &t.src)),
    }
}

/// A dry run's error as it leaves the engine: through the plan's masking door.
fn masked(door: &crate::masking::Door, e: PlanError) -> PlanError {
    match e {
        PlanError::Inputs(list) => PlanError::Inputs(door.all(list)),
        PlanError::Render { what, mut source } => {
            source.message = door.text(&source.message);
            PlanError::Render {
                what: door.text(&what),
                source,
            }
        }
        other => other,
    }
}

/// What runs the reads of a plan (see `crate::probe`): the plan gives it each step as planned,
/// in order, and asks it which targets answered.
pub trait Probing {
    /// Decides and, for a read, runs one planned step; a step that ran successfully is made
    /// visible to the steps after it.
    fn step(&mut self, s: &Step, planned: &mut PlannedStep, r: &Renderer<'_>);
    /// Whether each target answered.
    fn reachability(&mut self, targets: &IndexMap<String, ResolvedTarget>) -> Vec<Reachability>;
}

/// A probe's word on one step.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// `ran`, `shown` or `skipped`.
    pub outcome: &'static str,
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Json>,
    /// The step ran and failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl Probe {
    pub fn shown(why: impl Into<String>) -> Probe {
        Probe {
            outcome: "shown",
            why: why.into(),
            result: None,
            outputs: None,
            error: None,
            duration_ms: None,
        }
    }

    pub(crate) fn skipped(why: impl Into<String>) -> Probe {
        Probe {
            outcome: "skipped",
            ..Probe::shown(why)
        }
    }
}

/// Whether a target answered.
#[derive(Debug, Clone, Serialize)]
pub struct Reachability {
    pub target: String,
    pub kind: &'static str,
    /// `None`: not checked (why is in `detail`).
    pub reachable: Option<bool>,
    pub detail: String,
}
