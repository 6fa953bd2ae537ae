//! The routes: each page and the API call behind it. A page handler asks the same [`view`]
//! function as its API twin and renders the value; actions check identity, role and CSRF
//! token here, then go to [`actions`].

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_state::{Decision, RunRecord, RunStatus, StateError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::actions::{self, Outcome};
use crate::app::App;
use crate::auth::{Auth, Caller, Identity, Role, TOKEN_COOKIE};
use crate::{dag, logs, openapi, pages, reports, runbooks, view};

type Shared = State<Arc<App>>;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/runs") }))
        .route("/runs", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/dag.svg", get(dag_svg))
        .route("/runs/{id}/reports/{format}", get(report_download))
        .route("/runs/{id}/steps/{step}", get(step_page))
        .route("/runs/{id}/steps/{step}/approve", post(approve_form))
        .route("/runs/{id}/steps/{step}/reject", post(reject_form))
        .route("/runs/{id}/resume", post(resume_form))
        .route("/runs/{id}/cancel", post(cancel_form))
        .route("/approvals", get(approvals_page))
        .route("/runbooks", get(runbooks_page))
        .route("/runbooks/view", get(runbook_page))
        .route("/api/runbooks", get(runbooks_api))
        .route("/api/runbooks/view", get(runbook_api))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        // Browsers ask for it on every site: nothing, rather than a 404 in their console.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/me", get(me_api))
        .route("/api/runs", get(runs_api))
        .route("/api/runs/{id}", get(run_api))
        .route("/api/runs/{id}/dag.svg", get(dag_svg))
        .route("/api/runs/{id}/reports/{format}", get(report_download))
        .route("/api/runs/{id}/steps/{step}", get(step_api))
        .route("/api/runs/{id}/steps/{step}/log", get(step_log))
        .route("/api/runs/{id}/steps/{step}/approve", post(approve_api))
        .route("/api/runs/{id}/steps/{step}/reject", post(reject_api))
        .route("/api/runs/{id}/resume", post(resume_api))
        .route("/api/runs/{id}/cancel", post(cancel_api))
        .route("/api/approvals", get(approvals_api))
        .fallback(|| async { Failure::page(StatusCode::NOT_FOUND, "no such page") })
}

/// Why a request was not served, and whether to answer in JSON or HTML.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
    api: bool,
    /// A page asked without identity in token mode goes to the login form.
    login: bool,
}

impl Failure {
    fn api(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            api: true,
            login: false,
        }
    }
    fn page(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            api: false,
            ..Failure::api(status, message)
        }
    }
    fn for_page(mut self) -> Failure {
        self.api = false;
        self
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Failure {
        tracing::warn!("state store: {e}");
        Failure::api(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the state store failed: {e}"),
        )
    }
}

// A failure reaches every client as text it can show: JSON `{error}` for the API, a page for
// a browser.
impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.api {
            return (self.status, Json(json!({ "error": self.message }))).into_response();
        }
        if self.login {
            return Redirect::to("/login").into_response();
        }
        let page = pages::Pages::new().render(
            "message.html",
            json!({ "title": self.status.canonical_reason().unwrap_or("error"), "message": self.message, "me": {} }),
        );
        match page {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(e) => (self.status, e).into_response(),
        }
    }
}

/// Reading: open with `--auth none` (the console then listens on loopback only), else any
/// identity (each role includes viewer).
fn may_read(app: &App, caller: &Caller) -> Result<(), Failure> {
    match (&app.config.auth, &caller.identity) {
        (Auth::None, _) | (_, Some(_)) => Ok(()),
        (auth, None) => Err(Failure {
            login: matches!(auth, Auth::Token { .. }),
            ..Failure::api(
                StatusCode::UNAUTHORIZED,
                "who are you? this console needs an identity to be read",
            )
        }),
    }
}

/// An action: an identity with the role, and, when the browser sends the credential by
/// itself, the user's CSRF token (form field `csrf` or header `X-CSRF-Token`).
fn may_act<'a>(
    app: &App,
    caller: &'a Caller,
    role: Role,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<&'a Identity, Failure> {
    let Some(who) = &caller.identity else {
        return Err(Failure::api(
            StatusCode::UNAUTHORIZED,
            match app.config.auth {
                Auth::None => {
                    "this console was started with --auth none: it only reads; actions need \
                     --auth token or --auth proxy"
                }
                _ => "an action needs an identity",
            },
        ));
    };
    if !who.has(role) {
        tracing::warn!(user = %who.user, source = %caller.source, role = role.as_str(), "action refused: role missing");
        return Err(Failure::api(
            StatusCode::FORBIDDEN,
            format!("{} does not have the role {}", who.user, role.as_str()),
        ));
    }
    if who.ambient() {
        let given =
            form_token.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
        if !given.is_some_and(|t| app.csrf.check(&who.user, t)) {
            tracing::warn!(user = %who.user, source = %caller.source, "action refused: CSRF token missing or wrong");
            return Err(Failure::api(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong: reload the page and try again",
            ));
        }
    }
    Ok(who)
}

/// An action on one run: [`may_act`], then the run, then the role's scope: a role scoped by
/// label counts only in a run whose labels match it. A refusal for the scope is written to
/// the run's audit trail, as the refusals of the actions themselves are.
#[allow(clippy::too_many_arguments)]
async fn may_act_on<'a>(
    app: &App,
    caller: &'a Caller,
    role: Role,
    headers: &HeaderMap,
    form_token: Option<&str>,
    id: &str,
    action: &str,
    step: Option<&str>,
) -> Result<(&'a Identity, RunRecord), Failure> {
    let who = may_act(app, caller, role, headers, form_token)?;
    let run = find_run(app, id).await?;
    if who.may(role, &run.labels) {
        return Ok((who, run));
    }
    let scopes: Vec<String> = who
        .roles
        .iter()
        .filter(|g| g.role == role || g.role == Role::Admin)
        .map(ToString::to_string)
        .collect();
    let labels: Vec<String> = run.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let reason = format!(
        "{} has the role {} only as {}, and run {} has the labels [{}]",
        who.user,
        role.as_str(),
        scopes.join(", "),
        run.id,
        labels.join(",")
    );
    tracing::warn!(user = %who.user, source = %caller.source, role = role.as_str(), run_id = %run.id, "action refused: out of the role's scope");
    actions::audit(
        app.store.as_ref(),
        &run.id,
        who,
        caller,
        action,
        step,
        format!("refused: {reason}"),
    )
    .await?;
    Err(Failure::api(StatusCode::FORBIDDEN, reason))
}

/// Who is asking, as pages and `/api/me` show it; with a run's labels, what the user may do in
/// that run (the buttons a page offers).
fn me(app: &App, caller: &Caller, run: Option<&RunRecord>) -> Value {
    match &caller.identity {
        Some(who) => json!({
            "user": who.user,
            "roles": who.roles,
            "groups": who.groups,
            "via": who.via,
            "auth": app.config.auth.name(),
            "source": caller.source,
            "csrf": app.csrf.token(&who.user),
            "can_approve": run.map_or(who.has(Role::Approver), |r| who.may(Role::Approver, &r.labels)),
            "can_operate": run.map_or(who.has(Role::Operator), |r| who.may(Role::Operator, &r.labels)),
        }),
        None => json!({ "user": null, "auth": app.config.auth.name(), "source": caller.source }),
    }
}

fn render(app: &App, name: &str, caller: &Caller, ctx: Value) -> Result<Response, Failure> {
    render_for(app, name, caller, ctx, None)
}

/// [`render`] for a page of one run: its buttons are those the user's roles allow in it.
fn render_for(
    app: &App,
    name: &str,
    caller: &Caller,
    mut ctx: Value,
    run: Option<&RunRecord>,
) -> Result<Response, Failure> {
    ctx["me"] = me(app, caller, run);
    app.pages
        .render(name, ctx)
        .map(|html| Html(html).into_response())
        .map_err(|e| Failure::page(StatusCode::INTERNAL_SERVER_ERROR, e))
}

async fn find_run(app: &App, id: &str) -> Result<RunRecord, Failure> {
    // Exact ids only: a prefix that names one run today names two tomorrow, and a link must
    // keep its meaning.
    let found = match app.store.get_run(id).await {
        // A prefix of several runs is no run here.
        Err(StateError::AmbiguousRunId { .. }) => None,
        other => other?,
    };
    match found {
        Some(run) if run.id == id => Ok(run),
        _ => Err(Failure::api(
            StatusCode::NOT_FOUND,
            format!("no run {}", pages::visible(id)),
        )),
    }
}

// ---- runs ----

#[derive(Deserialize, Default)]
pub struct RunsQuery {
    runbook: Option<String>,
    status: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
    /// A run id or a unique prefix of it: that run alone.
    id: Option<String>,
    /// Only runs started before this day (`YYYY-MM-DD`, UTC) or time (RFC 3339).
    before: Option<String>,
    /// Only runs whose runbook had these labels: `team=memory,kind=backup`.
    label: Option<String>,
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
fn parse_day(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

async fn runs_value(app: &App, q: &RunsQuery) -> Result<Value, Failure> {
    if let Some(id) = q.id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let found = match app.store.get_run(id).await {
            Ok(found) => found,
            Err(e @ StateError::AmbiguousRunId { .. }) => {
                return Err(Failure::api(StatusCode::BAD_REQUEST, e.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let runs: Vec<Value> = found
            .iter()
            .map(|r| view::run_row(r, r.status.as_str()))
            .collect();
        return Ok(json!({ "runs": runs, "next": null, "filter": { "id": id } }));
    }
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<RunStatus>()
                .map_err(|e| Failure::api(StatusCode::BAD_REQUEST, e.to_string()))?,
        ),
        None => None,
    };
    let after = match (
        q.after.as_deref().filter(|s| !s.is_empty()),
        q.before.as_deref().filter(|s| !s.is_empty()),
    ) {
        (Some(a), _) => Some(view::parse_cursor(a).ok_or_else(|| {
            Failure::api(
                StatusCode::BAD_REQUEST,
                "`after` is not a cursor this server gave",
            )
        })?),
        // Before a time: the cursor of a run at that instant with the least id, so that every
        // run started at it is left out too.
        (None, Some(b)) => Some(cairn_state::RunCursor {
            started_at: parse_day(b).ok_or_else(|| {
                Failure::api(
                    StatusCode::BAD_REQUEST,
                    "`before` must be a day (YYYY-MM-DD) or an RFC 3339 time",
                )
            })?,
            id: String::new(),
        }),
        (None, None) => None,
    };
    let runbook = q.runbook.clone().filter(|s| !s.is_empty());
    let labels = view::parse_label_filter(q.label.as_deref().unwrap_or(""))
        .map_err(|e| Failure::api(StatusCode::BAD_REQUEST, e))?;
    Ok(view::runs_page(
        &app.store,
        runbook,
        status,
        labels,
        after,
        q.limit.unwrap_or(50),
    )
    .await?)
}

async fn runs_api(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Value>, Failure> {
    may_read(&app, &caller)?;
    Ok(Json(runs_value(&app, &q).await?))
}

async fn runs_page(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Query(q): Query<RunsQuery>,
) -> Result<Response, Failure> {
    may_read(&app, &caller).map_err(Failure::for_page)?;
    let v = runs_value(&app, &q).await.map_err(Failure::for_page)?;
    render(&app, "runs.html", &caller, v)
}

// ---- one run ----

async fn run_api(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Failure> {
    may_read(&app, &caller)?;
    let run = find_run(&app, &id).await?;
    let mut v = view::run_detail(&app.store, &run).await?;
    v["objectives"] = objectives(&app, &run).await;
    Ok(Json(v))
}

/// The run's RTO and RPO as its Markdown report states them (the CLI's renderer).
async fn objectives(app: &App, run: &RunRecord) -> Value {
    match &app.config.reports {
        Some(r) => r.objectives(run).await.into(),
        None => Value::Array(Vec::new()),
    }
}

/// A report of the run for download, by the renderer of `cairn show RUN --report` (and
/// `--junit`, `--metrics-file`).
async fn report_download(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path((id, format)): Path<(String, String)>,
) -> Result<Response, Failure> {
    may_read(&app, &caller)?;
    let format = reports::Format::parse(&format).ok_or_else(|| {
        Failure::api(
            StatusCode::NOT_FOUND,
            format!(
                "no report format {}: markdown, junit or metrics",
                pages::visible(&format)
            ),
        )
    })?;
    let reports = app.config.reports.clone().ok_or_else(|| {
        Failure::api(
            StatusCode::NOT_FOUND,
            "this console was started without the report renderers",
        )
    })?;
    let run = find_run(&app, &id).await?;
    let file = format.file_name(&run.id);
    let text = reports
        .render(&app.store, run, format)
        .await
        .map_err(|e| Failure::api(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        text,
    )
        .into_response())
}

#[derive(Deserialize, Default)]
pub struct RunPageQuery {
    /// What the last action said, shown once (a fixed word, never free text from the URL).
    done: Option<String>,
}

async fn run_page(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<RunPageQuery>,
) -> Result<Response, Failure> {
    may_read(&app, &caller).map_err(Failure::for_page)?;
    let run = find_run(&app, &id).await.map_err(Failure::for_page)?;
    let mut v = view::run_detail(&app.store, &run)
        .await
        .map_err(|e| Failure::from(e).for_page())?;
    let done = q.done.and_then(|d| {
        ["approved", "rejected", "answered", "resumed", "cancelled"]
            .into_iter()
            .find(|w| *w == d)
    });
    v["done"] = done.into();
    // The page shows no step's result (its own page does): a result holds up to 1 MiB of each
    // output stream, and every string of the context is scanned and copied to render it.
    for s in v["steps"].as_array_mut().into_iter().flatten() {
        if let Some(o) = s.as_object_mut() {
            o.remove("result");
        }
        for i in s["items"].as_array_mut().into_iter().flatten() {
            if let Some(o) = i.as_object_mut() {
                o.remove("result");
            }
        }
    }
    v["objectives"] = objectives(&app, &run).await;
    v["reports"] = app.config.reports.is_some().into();
    v["resumable"] = (run.parent_run.is_none()
        && matches!(
            run.status,
            RunStatus::Failed | RunStatus::Interrupted | RunStatus::Paused
        ))
    .into();
    v["rerunnable"] = (run.parent_run.is_none() && run.status != RunStatus::Running).into();
    v["cancellable"] = (run.status == RunStatus::Running).into();
    render_for(&app, "run.html", &caller, v, Some(&run))
}

async fn dag_svg(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    may_read(&app, &caller)?;
    let run = find_run(&app, &id).await?;
    let defs = app.store.step_defs(&run.id).await?;
    let steps = app.store.steps(&run.id).await?;
    let svg = dag::svg(&defs, &steps, run.status == RunStatus::Running);
    Ok((
        [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
        svg,
    )
        .into_response())
}

// ---- one step ----

async fn step_value(app: &App, id: &str, step: &str) -> Result<(RunRecord, Value), Failure> {
    let run = find_run(app, id).await?;
    let steps = app.store.steps(&run.id).await?;
    let v = view::step_detail(&run, &steps, step).ok_or_else(|| {
        Failure::api(
            StatusCode::NOT_FOUND,
            format!("run {} has no step {}", run.id, pages::visible(step)),
        )
    })?;
    Ok((run, v))
}

async fn step_api(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path((id, step)): Path<(String, String)>,
) -> Result<Json<Value>, Failure> {
    may_read(&app, &caller)?;
    Ok(Json(step_value(&app, &id, &step).await?.1))
}

#[derive(Deserialize, Default)]
pub struct ItemQuery {
    item: Option<u32>,
    from: Option<u64>,
}

async fn step_page(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path((id, step)): Path<(String, String)>,
    Query(q): Query<ItemQuery>,
) -> Result<Response, Failure> {
    may_read(&app, &caller).map_err(Failure::for_page)?;
    let item = q.item;
    let (run, mut v) = step_value(&app, &id, &step)
        .await
        .map_err(Failure::for_page)?;
    let steps = app
        .store
        .steps(&run.id)
        .await
        .map_err(|e| Failure::from(e).for_page())?;
    if let Some(rec) = steps.iter().find(|s| s.step_id == step && s.item == item) {
        v["item"] = item.into();
        v["running"] = (rec.status == cairn_state::StepStatus::Running
            && run.status == RunStatus::Running)
            .into();
        match logs::log_file(&app.config.logs_dir, rec) {
            Some(path) if path.exists() => match logs::tail(&path) {
                Ok((text, start, end)) => {
                    v["log"] = json!({ "text": text, "start": start, "end": end });
                }
                Err(e) => v["log_error"] = e.into(),
            },
            _ => v["log"] = json!({ "text": "", "start": 0, "end": 0 }),
        }
    }
    render(&app, "step.html", &caller, v)
}

/// The step's log as Server-Sent Events: `log` events (`{"text": ...}`, id = the byte offset
/// after the text), `reset` when the file was replaced (the text starts anew), then one `end`
/// when the step has stopped and all was sent.
async fn step_log(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path((id, step)): Path<(String, String)>,
    Query(q): Query<ItemQuery>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    may_read(&app, &caller)?;
    let run = find_run(&app, &id).await?;
    let steps = app.store.steps(&run.id).await?;
    let rec = steps
        .iter()
        .find(|s| s.step_id == step && s.item == q.item)
        .ok_or_else(|| {
            Failure::api(
                StatusCode::NOT_FOUND,
                format!("run {} has no step {}", run.id, pages::visible(&step)),
            )
        })?;
    let path = logs::log_file(&app.config.logs_dir, rec)
        .ok_or_else(|| Failure::api(StatusCode::NOT_FOUND, "this step has no log"))?;
    let resume_at = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let offset = resume_at
        .or(q.from)
        .unwrap_or_else(|| logs::tail_start(&path));
    let running =
        rec.status == cairn_state::StepStatus::Running && run.status == RunStatus::Running;
    let follower = logs::Follower::new(&app.watches, &app.store, rec, path, offset, running);
    let stream = futures::stream::unfold(Some(follower), |state| async move {
        let mut f = state?;
        match f.next().await {
            logs::Next::Text(text, offset) => {
                // `<` as an escape: the event's JSON is never markup, wherever it is pasted.
                let data = json!({ "text": pages::visible(&text) })
                    .to_string()
                    .replace('<', "\\u003c");
                let event = Event::default()
                    .event("log")
                    .id(offset.to_string())
                    .data(data);
                Some((Ok::<_, Infallible>(event), Some(f)))
            }
            // Id 0: a client that reconnects after it starts the new file from its start.
            logs::Next::Reset => Some((
                Ok(Event::default().event("reset").id("0").data("{}")),
                Some(f),
            )),
            logs::Next::End => Some((Ok(Event::default().event("end").data("{}")), None)),
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ---- approvals ----

async fn approvals_api(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, Failure> {
    may_read(&app, &caller)?;
    Ok(Json(view::waiting_gates(&app.store).await?))
}

async fn approvals_page(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Failure> {
    may_read(&app, &caller).map_err(Failure::for_page)?;
    let v = view::waiting_gates(&app.store)
        .await
        .map_err(|e| Failure::from(e).for_page())?;
    render(&app, "approvals.html", &caller, v)
}

// ---- runbooks ----

fn runbooks_dir(app: &App) -> Result<std::path::PathBuf, Failure> {
    app.config.runbooks.clone().ok_or_else(|| {
        Failure::api(
            StatusCode::NOT_FOUND,
            "this console was started without --runbooks DIR",
        )
    })
}

async fn runbooks_value(app: &App) -> Result<Value, Failure> {
    let dir = runbooks_dir(app)?;
    // Reading and validating files is blocking work.
    tokio::task::spawn_blocking(move || {
        let list: Vec<Value> = runbooks::files(&dir)
            .iter()
            .map(|p| {
                let mut v = runbooks::check(&dir, p);
                if let Some(m) = v.as_object_mut() {
                    m.remove("steps");
                    m.remove("diagnostics");
                }
                v
            })
            .collect();
        json!({ "dir": dir.display().to_string(), "runbooks": list })
    })
    .await
    .map_err(|e| Failure::api(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[derive(Deserialize, Default)]
pub struct RunbookQuery {
    file: Option<String>,
}

async fn runbook_value(app: &App, file: Option<String>) -> Result<Value, Failure> {
    let dir = runbooks_dir(app)?;
    let file = file.unwrap_or_default();
    let found = {
        let dir = dir.clone();
        let file = file.clone();
        // Only a file of the list: no path from a URL reaches the disk otherwise.
        tokio::task::spawn_blocking(move || {
            runbooks::files(&dir)
                .into_iter()
                .find(|p| runbooks::relative(&dir, p) == file)
                .map(|p| runbooks::check(&dir, &p))
        })
        .await
        .map_err(|e| Failure::api(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    let mut v = found.ok_or_else(|| {
        Failure::api(
            StatusCode::NOT_FOUND,
            format!(
                "no runbook {} under {}",
                pages::visible(&file),
                dir.display()
            ),
        )
    })?;
    let runs = match v["name"].as_str() {
        Some(name) => view::runs_page(
            &app.store,
            Some(name.to_string()),
            None,
            Vec::new(),
            None,
            10,
        )
        .await?["runs"]
            .clone(),
        None => json!([]),
    };
    v["runs"] = runs;
    Ok(v)
}

async fn runbooks_api(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, Failure> {
    may_read(&app, &caller)?;
    Ok(Json(runbooks_value(&app).await?))
}

async fn runbooks_page(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Failure> {
    may_read(&app, &caller).map_err(Failure::for_page)?;
    let v = runbooks_value(&app).await.map_err(Failure::for_page)?;
    render(&app, "runbooks.html", &caller, v)
}

async fn runbook_api(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Query(q): Query<RunbookQuery>,
) -> Result<Json<Value>, Failure> {
    may_read(&app, &caller)?;
    Ok(Json(runbook_value(&app, q.file).await?))
}

async fn runbook_page(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Query(q): Query<RunbookQuery>,
) -> Result<Response, Failure> {
    may_read(&app, &caller).map_err(Failure::for_page)?;
    let v = runbook_value(&app, q.file)
        .await
        .map_err(Failure::for_page)?;
    render(&app, "runbook.html", &caller, v)
}

// ---- actions ----

#[derive(Deserialize, Default)]
pub struct AnswerForm {
    csrf: Option<String>,
    comment: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct AnswerBody {
    comment: Option<String>,
}

/// The gate a request answers, and how.
struct Answer<'a> {
    id: &'a str,
    step: &'a str,
    decision: Decision,
    comment: Option<String>,
}

async fn answer_with(
    app: &App,
    caller: &Caller,
    headers: &HeaderMap,
    csrf: Option<&str>,
    a: Answer<'_>,
) -> Result<String, Failure> {
    let verb = match a.decision {
        Decision::Approved => "approve",
        Decision::Rejected => "reject",
    };
    let (who, run) = may_act_on(
        app,
        caller,
        Role::Approver,
        headers,
        csrf,
        a.id,
        verb,
        Some(a.step),
    )
    .await?;
    let asked = actions::Asked {
        run: &run,
        step: a.step,
        decision: a.decision,
        comment: a.comment,
    };
    match actions::answer(&app.store, &app.config.resumer, asked, who, caller).await? {
        Outcome::Done(s) => Ok(s),
        Outcome::Refused(s) => Err(Failure::api(StatusCode::FORBIDDEN, s)),
        Outcome::Missing(s) => Err(Failure::api(StatusCode::NOT_FOUND, s)),
    }
}

async fn approve_form(
    s: Shared,
    e: Extension<Caller>,
    p: Path<(String, String)>,
    h: HeaderMap,
    f: Form<AnswerForm>,
) -> Result<Response, Failure> {
    answer_form(s, e, p, h, f, Decision::Approved).await
}

async fn reject_form(
    s: Shared,
    e: Extension<Caller>,
    p: Path<(String, String)>,
    h: HeaderMap,
    f: Form<AnswerForm>,
) -> Result<Response, Failure> {
    answer_form(s, e, p, h, f, Decision::Rejected).await
}

async fn answer_form(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path((id, step)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<AnswerForm>,
    decision: Decision,
) -> Result<Response, Failure> {
    let said = answer_with(
        &app,
        &caller,
        &headers,
        f.csrf.as_deref(),
        Answer {
            id: &id,
            step: &step,
            decision,
            comment: f.comment,
        },
    )
    .await
    .map_err(Failure::for_page)?;
    let done = if said.contains("waits for") {
        "answered"
    } else if decision == Decision::Approved {
        "approved"
    } else {
        "rejected"
    };
    Ok(Redirect::to(&format!("/runs/{}?done={done}", urlencoding::encode(&id))).into_response())
}

async fn approve_api(
    s: Shared,
    e: Extension<Caller>,
    p: Path<(String, String)>,
    h: HeaderMap,
    b: axum::body::Bytes,
) -> Result<Json<Value>, Failure> {
    answer_api(s, e, p, h, b, Decision::Approved).await
}

async fn reject_api(
    s: Shared,
    e: Extension<Caller>,
    p: Path<(String, String)>,
    h: HeaderMap,
    b: axum::body::Bytes,
) -> Result<Json<Value>, Failure> {
    answer_api(s, e, p, h, b, Decision::Rejected).await
}

async fn answer_api(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path((id, step)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
    decision: Decision,
) -> Result<Json<Value>, Failure> {
    let comment = json_body::<AnswerBody>(&body)?.comment;
    let said = answer_with(
        &app,
        &caller,
        &headers,
        None,
        Answer {
            id: &id,
            step: &step,
            decision,
            comment,
        },
    )
    .await?;
    Ok(Json(json!({ "ok": true, "message": said })))
}

#[derive(Deserialize, Default)]
pub struct ResumeForm {
    csrf: Option<String>,
    /// Re-run this step and everything downstream of it.
    from: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ResumeBody {
    from: Option<String>,
}

#[derive(Clone, Copy)]
enum RunAction {
    Resume,
    Cancel,
}

async fn run_action(
    app: &App,
    caller: &Caller,
    headers: &HeaderMap,
    id: &str,
    csrf: Option<&str>,
    what: RunAction,
    from: Option<&str>,
) -> Result<String, Failure> {
    let from = from.filter(|f| !f.is_empty());
    let verb = match (what, from) {
        (RunAction::Resume, None) => "resume",
        (RunAction::Resume, Some(_)) => "rerun",
        (RunAction::Cancel, _) => "cancel",
    };
    let (who, run) = may_act_on(app, caller, Role::Operator, headers, csrf, id, verb, from).await?;
    let outcome = match what {
        RunAction::Resume => {
            actions::resume(&app.store, &app.config.resumer, &run, from, who, caller).await?
        }
        RunAction::Cancel => actions::cancel(&app.store, &run, who, caller).await?,
    };
    match outcome {
        Outcome::Done(s) => Ok(s),
        Outcome::Refused(s) => Err(Failure::api(StatusCode::CONFLICT, s)),
        Outcome::Missing(s) => Err(Failure::api(StatusCode::NOT_FOUND, s)),
    }
}

fn json_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Failure> {
    // An empty body is the defaults; a body that is not the JSON object asked is refused.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Failure::api(StatusCode::BAD_REQUEST, format!("the body: {e}")))
}

async fn resume_form(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ResumeForm>,
) -> Result<Response, Failure> {
    run_action(
        &app,
        &caller,
        &headers,
        &id,
        f.csrf.as_deref(),
        RunAction::Resume,
        f.from.as_deref(),
    )
    .await
    .map_err(Failure::for_page)?;
    Ok(Redirect::to(&format!("/runs/{}?done=resumed", urlencoding::encode(&id))).into_response())
}

async fn resume_api(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Failure> {
    let b: ResumeBody = json_body(&body)?;
    let said = run_action(
        &app,
        &caller,
        &headers,
        &id,
        None,
        RunAction::Resume,
        b.from.as_deref(),
    )
    .await?;
    Ok(Json(json!({ "ok": true, "message": said })))
}

async fn cancel_form(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ResumeForm>,
) -> Result<Response, Failure> {
    run_action(
        &app,
        &caller,
        &headers,
        &id,
        f.csrf.as_deref(),
        RunAction::Cancel,
        None,
    )
    .await
    .map_err(Failure::for_page)?;
    Ok(Redirect::to(&format!(
        "/runs/{}?done=cancelled",
        urlencoding::encode(&id)
    ))
    .into_response())
}

async fn cancel_api(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, Failure> {
    let said = run_action(&app, &caller, &headers, &id, None, RunAction::Cancel, None).await?;
    Ok(Json(json!({ "ok": true, "message": said })))
}

// ---- identity ----

async fn me_api(State(app): Shared, Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(me(&app, &caller, None))
}

async fn login_page(State(app): Shared, Extension(caller): Extension<Caller>) -> Response {
    render(&app, "login.html", &caller, json!({})).unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize, Default)]
pub struct LoginForm {
    token: Option<String>,
}

/// The login form of `--auth token`: a token of the file sets the cookie. The cookie is
/// `HttpOnly` (no script reads it) and `SameSite=Strict` (no other site's page sends it).
async fn login(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let cross_site = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => {
            let origin = origin.to_str().unwrap_or("");
            let host = host.to_str().unwrap_or("");
            origin.split_once("://").map(|(_, h)| h) != Some(host)
        }
        _ => false,
    };
    let token = form.token.unwrap_or_default();
    let who = match &app.config.auth {
        Auth::Token { .. } if !cross_site => app.config.auth.login(&token),
        _ => None,
    };
    match who {
        Some(_) => (
            StatusCode::SEE_OTHER,
            [
                (
                    header::SET_COOKIE,
                    format!(
                        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200",
                        urlencoding::encode(token.trim())
                    ),
                ),
                (header::LOCATION, "/runs".to_string()),
            ],
        )
            .into_response(),
        None => {
            let mut res = render(
                &app,
                "login.html",
                &caller,
                json!({ "error": match app.config.auth {
                    Auth::Token { .. } => "this token is not one of the console's",
                    _ => "this console does not take tokens (see --auth)",
                } }),
            )
            .unwrap_or_else(IntoResponse::into_response);
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            res
        }
    }
}

async fn logout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
            ),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}

// ---- static ----

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        pages::CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        pages::JS,
    )
        .into_response()
}

async fn openapi_json() -> Json<Value> {
    Json(openapi::document())
}
