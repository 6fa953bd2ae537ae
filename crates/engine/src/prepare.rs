//! Templates -> actions. One step's definition and a context become a [`Prepared`] action: the
//! exact command, SQL with its bound values, request or call. The dry-run prints it; a run performs
//! it. Sharing this one path is what keeps a plan from drifting from a run.

use crate::context::{Base, Local, context};
use cairn_model::{
    ApprovalStep, CheckState, CheckStep, ChromaStep, HttpStep, Limit, OnTimeout, Poll, SqlStep,
    Step, StepKind, TValue, TargetKind, Threshold, Tmpl,
};
use cairn_template::{Dialect, TemplateError, Templates, Value};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::Duration;

/// A target with its templates rendered (once per run, after vars).
#[derive(Clone, Debug, Serialize)]
pub struct ResolvedTarget {
    pub name: String,
    pub kind: TargetKind,
    pub url: String,
    #[serde(skip)]
    pub password: Option<String>,
    #[serde(skip)]
    pub bearer: Option<String>,
    #[serde(skip)]
    pub basic: Option<(String, Option<String>)>,
    pub headers: IndexMap<String, String>,
    pub insecure: bool,
    pub tenant: Option<String>,
    pub database: Option<String>,
}

/// An action ready to perform (or to print, in a dry-run).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Prepared {
    Shell {
        /// The script, with references (`"$CAIRN_V1"`) where the template had values.
        command: String,
        /// The variables the references read: added to the process's environment, never
        /// written into the command line.
        #[serde(skip_serializing_if = "IndexMap::is_empty")]
        values: IndexMap<String, String>,
        #[serde(skip_serializing_if = "IndexMap::is_empty")]
        env: IndexMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        /// What the command leaves running is released when it exits 0 (`detach: true`).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        detach: bool,
    },
    Argv {
        /// For a known shell with `-c`, its script item holds references, as `Shell`'s does.
        argv: Vec<String>,
        #[serde(skip_serializing_if = "IndexMap::is_empty")]
        values: IndexMap<String, String>,
        #[serde(skip_serializing_if = "IndexMap::is_empty")]
        env: IndexMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        /// What the command leaves running is released when it exits 0 (`detach: true`).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        detach: bool,
    },
    Sql {
        target: String,
        url: String,
        sql: String,
        params: Vec<Json>,
        /// Values were placed by the lexer: the server's settings are checked before it runs.
        #[serde(skip)]
        lexed: bool,
    },
    Http {
        method: String,
        url: String,
        #[serde(skip_serializing_if = "IndexMap::is_empty")]
        headers: IndexMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        json: Option<Json>,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<String>,
        insecure: bool,
        follow_redirects: bool,
        #[serde(skip)]
        target: Option<String>,
    },
    Chroma {
        target: String,
        url: String,
        action: String,
        params: Json,
    },
    Check {
        value: Json,
        #[serde(skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        critical: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
        /// The state from which the step fails.
        #[serde(skip)]
        fail_on: CheckState,
    },
    Approval {
        message: String,
        #[serde(
            skip_serializing_if = "Option::is_none",
            serialize_with = "as_written_opt"
        )]
        timeout: Option<Duration>,
        on_timeout: OnTimeout,
        /// Who may answer (users, `group:NAME`); empty: anyone.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        approvers: Vec<String>,
        min_approvals: u32,
        allow_self_approval: bool,
        on_reject: cairn_model::OnReject,
        /// Notifiers told when it waits (besides the runbook's `notify.on.waiting`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        notify: Vec<String>,
    },
    Sleep {
        #[serde(serialize_with = "as_written")]
        duration: Duration,
    },
    Poll {
        action: Box<Prepared>,
        until: Condition,
        #[serde(serialize_with = "as_written")]
        interval: Duration,
        #[serde(serialize_with = "as_written")]
        timeout: Duration,
    },
    Report {
        #[serde(skip_serializing_if = "Option::is_none")]
        template: Option<String>,
        /// The template text when written in the runbook (`inline`).
        #[serde(skip)]
        inline: Option<String>,
        to: String,
    },
    Uses {
        runbook: String,
        with: IndexMap<String, Json>,
    },
}

impl Prepared {
    pub fn kind(&self) -> &'static str {
        match self {
            Prepared::Shell { .. } => "shell",
            Prepared::Argv { .. } => "argv",
            Prepared::Sql { .. } => "sql",
            Prepared::Http { .. } => "http",
            Prepared::Chroma { .. } => "chroma",
            Prepared::Check { .. } => "check",
            Prepared::Approval { .. } => "approval",
            Prepared::Sleep { .. } | Prepared::Poll { .. } => "wait",
            Prepared::Report { .. } => "report",
            Prepared::Uses { .. } => "uses",
        }
    }
}

/// A template that could not be rendered, with the field it came from and the line of the
/// runbook file where the failing part is written.
#[derive(Debug, thiserror::Error)]
#[error("{field}{}: {message}", .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct RenderError {
    pub field: String,
    pub message: String,
    /// The placeholder an expression depended on (dry-run only).
    pub undecided: Option<String>,
    /// Line in the runbook file.
    pub line: Option<u32>,
}

/// Renders one step's templates against a context.
pub struct Renderer<'a> {
    pub templates: &'a Templates,
    pub base: &'a Arc<Base>,
    pub targets: &'a IndexMap<String, ResolvedTarget>,
    pub local: Local,
}

fn err(field: &str, t: &Tmpl, e: TemplateError) -> RenderError {
    RenderError {
        field: field.to_string(),
        undecided: e.undecided().map(str::to_string),
        line: Some(e.line.map_or(t.span.line, |l| t.file_line(l))),
        message: e.message,
    }
}

/// How a dry run shows a template whose rendering depends on a step that has not run: never a
/// guess, the template itself marked as decided at run time.
pub fn unknown_text(path: &str, src: &str) -> String {
    format!("<at run time (depends on {path}): {}>", src.trim())
}

impl Renderer<'_> {
    fn cx(&self) -> Value {
        context(self.base, self.local.clone())
    }

    /// The template context this renderer renders against.
    pub fn context(&self) -> Value {
        self.cx()
    }

    /// A render's result; in a dry run, what depends on a step not run yet is shown as such
    /// (see [`unknown_text`]) instead of failing the plan.
    fn shown<T>(
        &self,
        rendered: Result<T, TemplateError>,
        t: &Tmpl,
        field: &str,
        unknown: impl FnOnce(String) -> T,
    ) -> Result<T, RenderError> {
        match rendered {
            Ok(v) => Ok(v),
            Err(e) if self.base.steps.dry_run() && e.undecided().is_some() => Ok(unknown(
                unknown_text(e.undecided().unwrap_or_default(), &t.src),
            )),
            Err(e) => Err(err(field, t, e)),
        }
    }

    pub fn text(&self, t: &Tmpl, field: &str) -> Result<String, RenderError> {
        if !has_template(&t.src) {
            return Ok(t.src.clone());
        }
        self.shown(
            self.templates.render_text(&t.src, &self.cx()),
            t,
            field,
            |s| s,
        )
    }

    /// A shell script: values become references to the variables returned beside it.
    fn script(&self, t: &Tmpl, field: &str) -> Result<cairn_template::ShellScript, RenderError> {
        if !has_template(&t.src) {
            return Ok(cairn_template::ShellScript {
                script: t.src.clone(),
                vars: Vec::new(),
            });
        }
        self.shown(
            self.templates.render_shell(&t.src, &self.cx()),
            t,
            field,
            |script| cairn_template::ShellScript {
                script,
                vars: Vec::new(),
            },
        )
    }

    /// A templated YAML value to JSON; single-expression strings keep their type.
    pub fn value(&self, v: &TValue, field: &str) -> Result<Json, RenderError> {
        Ok(match v {
            TValue::Null => Json::Null,
            TValue::Bool(b) => Json::Bool(*b),
            TValue::Int(i) => Json::from(*i),
            TValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            TValue::Str(t) if !has_template(&t.src) => Json::String(t.src.clone()),
            TValue::Str(t) => self.shown(
                self.templates
                    .render_value(&t.src, &self.cx())
                    .map(|v| to_json(&v)),
                t,
                field,
                Json::String,
            )?,
            TValue::Seq(items) => Json::Array(
                items
                    .iter()
                    .map(|i| self.value(&i.value, field))
                    .collect::<Result<_, _>>()?,
            ),
            TValue::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.value.clone(),
                            self.value(&v.value, &format!("{field}.{}", k.value))?,
                        ))
                    })
                    .collect::<Result<_, RenderError>>()?,
            ),
        })
    }

    /// A bare expression (`when`, `until`): `Ok(value)` or an error (undecided in a dry-run).
    pub fn expr(&self, t: &Tmpl, field: &str) -> Result<Value, RenderError> {
        self.templates
            .eval_expr(&t.src, &self.cx())
            .map_err(|e| err(field, t, e))
    }

    fn env(&self, step: &Step) -> Result<IndexMap<String, String>, RenderError> {
        step.env
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.text(v, &format!("env.{k}"))?)))
            .collect()
    }

    fn target(&self, name: &str) -> Result<&ResolvedTarget, RenderError> {
        self.targets.get(name).ok_or_else(|| RenderError {
            field: "target".into(),
            message: format!("unknown target `{name}`"),
            undecided: None,
            line: None,
        })
    }

    /// The step's action, rendered.
    pub fn prepare(&self, step: &Step) -> Result<Prepared, RenderError> {
        // Rendered for every kind, so a broken `cwd` fails the step whatever it does.
        let cwd = self.cwd(step)?;
        Ok(match &step.kind {
            StepKind::Shell(t) => self.shell(step, t, cwd)?,
            StepKind::Argv(items) => self.argv(step, items, cwd)?,
            StepKind::Sql(q) => self.sql(q)?,
            StepKind::Http(h) => self.http(h)?,
            StepKind::Chroma(c) => self.chroma(c)?,
            StepKind::Check(c) => self.check(c)?,
            StepKind::Approval(a) => self.approval(a)?,
            StepKind::Wait(w) => match (&w.duration, &w.poll, &w.until) {
                (Some(d), _, _) => Prepared::Sleep {
                    duration: d.value.0,
                },
                (None, None, _) if w.templated.duration.is_some() => Prepared::Sleep {
                    duration: self
                        .wait_duration(&w.templated.duration, "wait.duration")?
                        .unwrap_or_default(),
                },
                (None, Some(p), Some(until)) => Prepared::Poll {
                    action: Box::new(self.polled(step, p, cwd)?),
                    until: Condition(until.clone()),
                    interval: self
                        .wait_duration(&w.templated.interval, "wait.interval")?
                        .or(w.interval.as_ref().map(|i| i.value.0))
                        .unwrap_or(DEFAULT_POLL_INTERVAL),
                    timeout: self
                        .wait_duration(&w.templated.timeout, "wait.timeout")?
                        .or(w.timeout.as_ref().map(|t| t.value.0))
                        .unwrap_or(DEFAULT_POLL_TIMEOUT),
                },
                // The parser refuses a wait that neither sleeps nor polls with `until`.
                _ => Prepared::Sleep {
                    duration: Duration::ZERO,
                },
            },
            StepKind::Report(r) => Prepared::Report {
                template: r.template.as_ref().map(|t| t.value.clone()),
                inline: r.inline.as_ref().map(|i| i.src.clone()),
                to: self.text(&r.to, "report.to")?,
            },
            StepKind::Uses(u) => Prepared::Uses {
                runbook: u.path.value.clone(),
                with: u
                    .with
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.value(&v.value, &format!("with.{k}"))?)))
                    .collect::<Result<_, RenderError>>()?,
            },
        })
    }

    /// A `wait` duration written as a template, rendered (`None` when written as a duration).
    fn wait_duration(
        &self,
        t: &Option<Tmpl>,
        field: &str,
    ) -> Result<Option<Duration>, RenderError> {
        t.as_ref().map(|t| self.duration(t, field)).transpose()
    }

    /// A duration written as a template (a step's `timeout`; a `wait`'s `duration`, `interval`
    /// and `timeout`), rendered now and read as a duration (`90s`, `2m`, `1h 30m`). A value that
    /// is not one fails, naming the field, the template, the value and its line.
    pub fn duration(&self, t: &Tmpl, field: &str) -> Result<Duration, RenderError> {
        let text = self.text(t, field)?;
        humantime::parse_duration(text.trim()).map_err(|e| RenderError {
            field: field.to_string(),
            message: format!(
                "`{}` gave `{text}`, which is not a duration ({e}): write it like `30s`, `10m` or `1h30m`",
                t.src.trim()
            ),
            undecided: None,
            line: Some(t.span.line),
        })
    }

    /// The timeout of one attempt: the step's template rendered now, else the fixed one.
    pub fn timeout(
        &self,
        fixed: Option<Duration>,
        template: Option<&Tmpl>,
    ) -> Result<Option<Duration>, RenderError> {
        match template {
            Some(t) => self.duration(t, "timeout").map(Some),
            None => Ok(fixed),
        }
    }

    /// The action a `wait` polls, rendered as the same kind of step would be.
    fn polled(&self, step: &Step, p: &Poll, cwd: Option<String>) -> Result<Prepared, RenderError> {
        match p {
            Poll::Shell(t) => self.shell(step, t, cwd),
            Poll::Argv(items) => self.argv(step, items, cwd),
            Poll::Sql(q) => self.sql(q),
            Poll::Http(h) => self.http(h),
            Poll::Chroma(c) => self.chroma(c),
        }
    }

    fn cwd(&self, step: &Step) -> Result<Option<String>, RenderError> {
        step.cwd.as_ref().map(|c| self.text(c, "cwd")).transpose()
    }

    fn shell(&self, step: &Step, t: &Tmpl, cwd: Option<String>) -> Result<Prepared, RenderError> {
        let script = self.script(t, "shell")?;
        Ok(Prepared::Shell {
            command: script.script,
            values: script.vars.into_iter().collect(),
            env: self.env(step)?,
            cwd,
            detach: step.detach(),
        })
    }

    fn argv(
        &self,
        step: &Step,
        items: &[Tmpl],
        cwd: Option<String>,
    ) -> Result<Prepared, RenderError> {
        let program = match items.first() {
            Some(t) => vec![self.text(t, "argv[0]")?],
            None => Vec::new(),
        };
        let written: Vec<&str> = program
            .iter()
            .map(String::as_str)
            .chain(items.iter().skip(1).map(|t| t.src.as_str()))
            .collect();
        let script_at = cairn_template::shell_script_index(&written);
        let mut values = IndexMap::new();
        let mut argv = program;
        for (i, t) in items.iter().enumerate().skip(1) {
            let field = format!("argv[{i}]");
            if Some(i) == script_at {
                let script = self.script(t, &field)?;
                values.extend(script.vars);
                argv.push(script.script);
            } else {
                argv.push(self.text(t, &field)?);
            }
        }
        Ok(Prepared::Argv {
            argv,
            values,
            env: self.env(step)?,
            cwd,
            detach: step.detach(),
        })
    }

    fn sql(&self, q: &SqlStep) -> Result<Prepared, RenderError> {
        let t = self.target(&q.target.value)?;
        let dialect = t.kind.sql_dialect().unwrap_or(Dialect::Postgres);
        let bound = self.shown(
            self.templates.render_sql(&q.query.src, &self.cx(), dialect),
            &q.query,
            "sql.query",
            |sql| cairn_template::BoundSql {
                sql,
                params: Vec::new(),
                lexed: true,
            },
        )?;
        Ok(Prepared::Sql {
            target: t.name.clone(),
            url: cairn_url::redact(&t.url),
            sql: bound.sql,
            params: bound.params,
            lexed: bound.lexed,
        })
    }

    fn http(&self, h: &HttpStep) -> Result<Prepared, RenderError> {
        let (method, url_t) = h.method();
        let target = h
            .target
            .as_ref()
            .map(|t| self.target(&t.value))
            .transpose()?;
        let mut headers = IndexMap::new();
        let mut auth = None;
        let mut insecure = false;
        let url = match target {
            None => self.text(url_t, "http.url")?,
            Some(t) => self.url_on_target(t, url_t)?,
        };
        if let Some(t) = target {
            headers.extend(t.headers.clone());
            insecure = t.insecure;
            auth = match (&t.bearer, &t.basic) {
                (Some(_), _) => Some("bearer ***".to_string()),
                (None, Some((u, _))) => Some(format!("basic {u}:***")),
                _ => None,
            };
        }
        for (k, v) in &h.headers {
            headers.insert(k.clone(), self.text(v, &format!("http.headers.{k}"))?);
        }
        let json = h
            .json
            .as_ref()
            .map(|j| self.value(&j.value, "http.json"))
            .transpose()?;
        let body = h
            .body
            .as_ref()
            .map(|b| self.text(b, "http.body"))
            .transpose()?;
        Ok(Prepared::Http {
            method: method.as_str().to_string(),
            url,
            headers,
            json,
            body,
            auth,
            insecure: h.insecure.unwrap_or(insecure),
            follow_redirects: h.follow_redirects.unwrap_or(true),
            target: h.target.as_ref().map(|t| t.value.clone()),
        })
    }

    /// A request on a target: a relative path has its values percent-encoded and is joined
    /// below the target's URL; the result must stay on the target's origin and base path.
    fn url_on_target(&self, t: &ResolvedTarget, url: &Tmpl) -> Result<String, RenderError> {
        let field = "http.url";
        let path = if cairn_steps::http::has_scheme(&url.src) {
            self.text(url, field)?
        } else if has_template(&url.src) {
            self.templates
                .render_url(&url.src, &self.cx())
                .map_err(|e| err(field, url, e))?
        } else {
            url.src.clone()
        };
        match cairn_steps::http::on_target(&t.url, &path) {
            Ok(joined) => Ok(joined),
            // A dry run may not know the target's URL or a value yet (`<...>`, `***`): show
            // the plain join; the run checks the real values.
            Err(_)
                if self.base.dry_run()
                    && (t.url.contains('<')
                        || t.url.contains(cairn_template::MASK)
                        || path.contains('<')) =>
            {
                Ok(format!(
                    "{}/{}",
                    t.url.trim_end_matches('/'),
                    path.trim_start_matches('/')
                ))
            }
            Err(e) => Err(RenderError {
                field: field.to_string(),
                message: format!("{e} (target `{}`)", t.name),
                undecided: None,
                line: Some(url.span.line),
            }),
        }
    }

    fn chroma(&self, c: &ChromaStep) -> Result<Prepared, RenderError> {
        let t = self.target(&c.target.value)?;
        let params = self.value(&c.action.1.value, &format!("chroma.{}", c.action.0.value))?;
        Ok(Prepared::Chroma {
            target: t.name.clone(),
            url: cairn_url::redact(&t.url),
            action: c.action.0.value.clone(),
            params,
        })
    }

    fn check(&self, c: &CheckStep) -> Result<Prepared, RenderError> {
        let value = match has_template(&c.value.src) {
            true => self.shown(
                self.templates
                    .render_value(&c.value.src, &self.cx())
                    .map(|v| to_json(&v)),
                &c.value,
                "check.value",
                Json::String,
            )?,
            false => c
                .value
                .src
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Json::String(c.value.src.clone()), Json::Number),
        };
        Ok(Prepared::Check {
            value,
            warning: self.limit(c.warning.as_ref(), "check.warning")?,
            critical: self.limit(c.critical.as_ref(), "check.critical")?,
            unit: c.unit.clone(),
            fail_on: c.fail_on.unwrap_or(CheckState::Critical),
        })
    }

    /// A threshold, normalised (`"> 80"`). A templated one is rendered and must then read as a
    /// threshold; in a dry-run, one that depends on a placeholder is shown as rendered.
    fn limit(&self, l: Option<&Limit>, field: &str) -> Result<Option<String>, RenderError> {
        let t = match l {
            None => return Ok(None),
            Some(Limit::Fixed(t)) => return Ok(Some(t.value.to_string())),
            Some(Limit::Templated(t)) => t,
        };
        let text = self.text(t, field)?;
        match Threshold::parse(&text) {
            Some(th) => Ok(Some(th.to_string())),
            None if self.base.steps.dry_run() && text.contains('<') => Ok(Some(text)),
            None => Err(RenderError {
                field: field.to_string(),
                message: format!(
                    "`{text}` is not a threshold: write a comparison and a number (`> 1000`, `>= 0.95`)"
                ),
                undecided: None,
                line: Some(t.span.line),
            }),
        }
    }

    fn approval(&self, a: &ApprovalStep) -> Result<Prepared, RenderError> {
        let gate = Gate::of(a);
        Ok(Prepared::Approval {
            message: self.text(&a.message, "approval.message")?,
            timeout: gate.timeout,
            on_timeout: gate.on_timeout,
            approvers: a.approvers.iter().map(|s| s.value.clone()).collect(),
            min_approvals: a.min_approvals.as_ref().map_or(1, |m| m.value.max(1)),
            allow_self_approval: a.allow_self_approval.unwrap_or(false),
            on_reject: a.on_reject.unwrap_or_default(),
            notify: a.notify.iter().map(|s| s.value.clone()).collect(),
        })
    }
}

pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(600);

pub fn fmt_dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A duration in a plan as it is written in a runbook (`1m 30s`).
fn as_written<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_dur(*d))
}

fn as_written_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => as_written(d, s),
        None => s.serialize_none(),
    }
}

pub fn has_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// A template value as JSON; placeholders become their `<path>` text.
pub fn to_json(v: &Value) -> Json {
    cairn_template::to_json(v).unwrap_or_else(|_| Json::String(v.to_string()))
}

/// How long an approval waits for an answer, and what the silence means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    pub timeout: Option<Duration>,
    pub on_timeout: OnTimeout,
}

impl Gate {
    pub fn of(a: &ApprovalStep) -> Gate {
        Gate {
            timeout: a.timeout.as_ref().map(|t| t.value.0),
            on_timeout: a.on_timeout.unwrap_or(OnTimeout::Reject),
        }
    }
}

/// A condition (`when`, a wait's `until`): one expression over the run's values.
#[derive(Clone, Debug)]
pub struct Condition(pub Tmpl);

impl Condition {
    /// The expression as written.
    pub fn src(&self) -> &str {
        &self.0.src
    }

    /// Its value against the renderer's context; in a dry run, an error that names the step
    /// the condition is undecided on.
    pub fn eval(&self, r: &Renderer<'_>, field: &str) -> Result<bool, RenderError> {
        r.expr(&self.0, field).map(|v| v.is_true())
    }
}

impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.src)
    }
}
