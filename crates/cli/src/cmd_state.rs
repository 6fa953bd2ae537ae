//! Commands over the state store: `resume`, `approve`, `reject`, `runs`, `show`.

use crate::exit;
use crate::location::StateArg;
use crate::output::{print, print_json, red, reset};
use crate::progress::{LogFormat, Progress};
use crate::run_options::{run_options, user};
use cairn_engine::events::outcome_word;
use cairn_engine::resume::{ResumeOptions, Resumed, resume};
use cairn_engine::warnings::{CheckWarning, check_warnings};
use cairn_state::{Decision, ListedRun, RunFilter, RunStatus, StepStatus};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ResumeArgs {
    /// The run id (or a unique prefix)
    run: String,
    /// Re-run STEP and everything downstream of it
    #[arg(long, value_name = "STEP")]
    from: Option<String>,
    /// Re-run STEP even if it is in doubt or succeeded, and what needs it (repeatable)
    #[arg(long, value_name = "STEP")]
    rerun: Vec<String>,
    /// Count STEP as done without running it (repeatable)
    #[arg(long, value_name = "STEP")]
    skip: Vec<String>,
    /// Accept edits to steps that already succeeded
    #[arg(long)]
    allow_changed: bool,
    #[arg(long, env = "CAIRN_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,
    /// Approve every approval gate, recorded as `auto:<user>`
    #[arg(long)]
    auto_approve: bool,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    reports: crate::report::ReportArgs,
    #[command(flatten)]
    warnings_exit: crate::WarningsExit,
    #[command(flatten)]
    state: StateArg,
}

pub fn resume_cmd(a: ResumeArgs) -> anyhow::Result<u8> {
    let location = a.state.location();
    let url = location.url.clone();
    let telemetry = crate::telemetry::Telemetry::from_env();
    let exporter = telemetry.clone();
    let code = crate::runtime()?.block_on(async move {
        let store = location.open_existing().await?;
        let mut opts = run_options(a.concurrency, a.auto_approve, &url);
        let ropts = ResumeOptions {
            from: a.from,
            rerun: a.rerun,
            skip: a.skip,
            allow_changed: a.allow_changed,
        };
        let templates = Arc::new(cairn_template::Templates::new());
        let progress: Arc<dyn cairn_engine::events::Sink> = Arc::new(Progress::new(a.log_format));
        // The run's notifiers, from its runbook as it is now and the inputs it was started with
        // (a run or runbook that cannot be read is refused by the resume itself).
        let found = store.get_run(&a.run).await?;
        let (sink, notifying) = match found
            .as_ref()
            .and_then(|r| cairn_engine::resume::runbook_of(&r.path, &templates).map(|c| (c, r)))
        {
            Some((checked, run)) => {
                // A resumed run is a span of its own, in the trace of this command.
                let spans = telemetry.as_ref().map(|t| t.run(&checked, true));
                let progress = match &spans {
                    Some(spans) => spans.sink(progress),
                    None => progress,
                };
                // Steps with `runs_on` go to workers through the queue, as when it started.
                if crate::routing::routes_steps(&checked) {
                    if !crate::location::is_postgres(&url) {
                        eprint!("{}", crate::routing::refuse_without_queue(&checked));
                        store.close().await;
                        return Ok(exit::INVALID);
                    }
                    let queue = crate::location::open_queue(&location).await?;
                    let router = crate::routing::Router::new(queue, &checked)
                        .await
                        .traced(spans.clone());
                    opts.actions = Some(cairn_engine::exec::ActionPort(Arc::new(router)));
                }
                match crate::notifying::for_run(&checked, &templates, &run.inputs, progress) {
                    Ok(pair) => pair,
                    Err(e) => {
                        crate::output::error(&e);
                        store.close().await;
                        return Ok(exit::INVALID);
                    }
                }
            }
            None => (progress, None),
        };
        let r = resume(&a.run, templates, store.clone(), sink, opts, &ropts).await;
        if let Some(n) = &notifying {
            n.finish().await;
        }
        let written = match &r {
            Ok(Resumed::Ran(report)) => {
                crate::report::write_for_run(&store, &report.run_id, &a.reports).await
            }
            _ => Ok(()),
        };
        store.close().await;
        written?;
        match r {
            Ok(Resumed::AlreadyDone { run_id }) => {
                eprintln!("run {run_id} already succeeded: nothing to resume");
                Ok(exit::OK)
            }
            Ok(Resumed::Ran(report)) => Ok(crate::report_exit_code(&report, a.warnings_exit)),
            Err(e) if e.kind() == cairn_engine::run::ErrorKind::Infrastructure => Err(e.into()),
            // Held by another process (running, or claimed by a resume started at the same
            // time) exits like a held lock; nothing was run.
            Err(e) => {
                crate::output::error(&e);
                Ok(e.kind().exit_code())
            }
        }
    });
    if let Some(t) = &exporter {
        t.shutdown();
    }
    code
}

#[derive(clap::Args)]
pub struct AnswerArgs {
    /// The run id (or a unique prefix)
    run: String,
    /// The approval step's id
    step: String,
    /// A comment recorded with the answer (why, ticket, ...). The answerer is always the
    /// operating-system user running this command (`SUDO_USER` under sudo)
    #[arg(long, short = 'm', value_name = "TEXT")]
    comment: Option<String>,
    /// Kept for older scripts: recorded as a comment, never as who answered
    #[arg(long, value_name = "TEXT", hide = true)]
    by: Option<String>,
    #[command(flatten)]
    state: StateArg,
}

pub fn answer(a: AnswerArgs, decision: Decision) -> anyhow::Result<u8> {
    use cairn_engine::answer::{Given, NotAnswered, answer};
    use cairn_engine::gate::Verdict;
    let location = a.state.location();
    let url = location.url.clone();
    crate::runtime()?.block_on(async move {
        // On PostgreSQL, the run queue too: a queued run whose gate is decided goes back to it.
        let (store, queue) = location.open_existing_with_queue().await?;
        let comment = match (a.comment, a.by) {
            (Some(c), Some(b)) => Some(format!("{c} (--by {b})")),
            (c, b) => c.or(b),
        };
        let given = Given {
            run: a.run,
            step: a.step,
            decision,
            by: user(),
            comment,
            host: cairn_state::current_host(),
            tty: cairn_engine::gate::tty(),
        };
        let step = given.step.clone();
        let by = given.by.clone();
        let answered = match answer(store.as_ref(), given, &cairn_engine::gate::unix_member).await {
            Ok(a) => a,
            Err(NotAnswered::State(e)) => return Err(e.into()),
            Err(NotAnswered::NoRun(run)) => {
                eprintln!("{}error{}: no run `{run}` in {url}", red(), reset());
                return Ok(exit::INVALID);
            }
            Err(e) => {
                eprintln!("{}error{}: {e}", red(), reset());
                return Ok(exit::INVALID);
            }
        };
        let run = &answered.run.id;
        match answered.verdict {
            Verdict::Pending { have, need } => eprintln!(
                "approved `{step}` of run {run} as {by}: {have} of {need} approvals; the gate waits for {} more",
                need - have
            ),
            _ => {
                let verb = if decision == Decision::Approved { "approved" } else { "rejected" };
                let top = &answered.top.id;
                // A run a worker paused is queued again, for a worker to resume (one whose
                // labels match it); any other run is resumed by whoever answers.
                let requeued = match &queue {
                    Some(q) => q.requeue(top).await?,
                    None => false,
                };
                if requeued {
                    eprintln!("{verb} `{step}` of run {run} as {by}; run {top} is queued again for a worker to resume");
                } else {
                    eprintln!("{verb} `{step}` of run {run} as {by}; continue with `cairn resume {top}`");
                }
            }
        }
        store.close().await;
        Ok(exit::OK)
    })
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct RunsArgs {
    /// Only runs of this runbook (its `name`)
    #[arg(long)]
    runbook: Option<String>,
    /// Only runs with this status: running, succeeded, failed, paused, interrupted
    #[arg(long)]
    status: Option<RunStatus>,
    /// Only runs whose runbook had these labels (all of them): --label team=memory,kind=backup
    /// or the option repeated
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = crate::location::parse_labels)]
    label: Vec<std::collections::BTreeMap<String, String>>,
    /// At most this many, newest first
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long, value_enum, default_value = "text")]
    output: Format,
    #[command(flatten)]
    state: StateArg,
}

/// A run record as JSON, with its `outcome` (`succeeded_with_warnings` when a check of a
/// succeeded run was not ok) and those `warnings`.
fn with_outcome(r: &cairn_state::RunRecord, warnings: &[CheckWarning]) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("outcome".into(), outcome_word(r.status, warnings).into());
        if r.unconfirmed.is_some() {
            // Running on another host, and this host has not seen its heartbeat counter move.
            m.insert("unconfirmed".into(), true.into());
        }
        m.insert(
            "warnings".into(),
            serde_json::to_value(warnings).unwrap_or_default(),
        );
    }
    v
}

fn duration(r: &cairn_state::RunRecord) -> String {
    let end = r.finished_at.unwrap_or(r.heartbeat_at);
    let d = (end - r.started_at).to_std().unwrap_or_default();
    crate::progress::secs(d)
}

pub fn runs(a: RunsArgs) -> anyhow::Result<u8> {
    let location = a.state.location();
    crate::runtime()?.block_on(async move {
        let (store, queue) = location.open_existing_with_queue().await?;
        let labels: Vec<(String, String)> = a.label.into_iter().flatten().collect();
        let unfiltered = a.status.is_none() && a.runbook.is_none() && labels.is_empty();
        let mut list = store
            .list_run_rows(&RunFilter {
                runbook: a.runbook,
                status: a.status,
                labels,
                limit: Some(a.limit),
            })
            .await?;
        // "Succeeded with warnings" is read from each succeeded run's checks.
        let mut warnings = std::collections::HashMap::new();
        for row in &mut list {
            if let ListedRun::Run(r) = row
                && r.status == RunStatus::Succeeded
            {
                match store.steps(&r.id).await {
                    Ok(steps) => {
                        warnings.insert(r.id.clone(), check_warnings(&steps, |_| None));
                    }
                    // A damaged step row leaves the run's outcome unknown: the run is listed
                    // as unreadable, like a damaged run row, and the rest stays readable.
                    Err(cairn_state::StateError::Corrupt(reason)) => {
                        *row = ListedRun::Unreadable {
                            id: r.id.clone(),
                            reason: format!("a step record: {reason}"),
                        };
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let warnings_of = |id: &str| warnings.get(id).map_or(&[][..], Vec::as_slice);
        // Runs queued for a worker and not started yet, when no filter would leave them out.
        let queued = if unfiltered {
            crate::queued::not_started(queue.as_ref()).await
        } else {
            Ok(Vec::new())
        };
        store.close().await;
        let queued = queued?;
        // A damaged row is shown as unreadable in its place: the rest of the history stays
        // readable, and the operator learns which run to look at.
        for row in &list {
            if let ListedRun::Unreadable { id, reason } = row {
                eprintln!("warning: run {id} cannot be read from the state store: {reason}");
            }
        }
        if a.output == Format::Json {
            let rows: Vec<serde_json::Value> = queued
                .iter()
                .map(crate::queued::json)
                .chain(list.iter().map(|row| match row {
                    ListedRun::Run(r) => with_outcome(r, warnings_of(&r.id)),
                    ListedRun::Unreadable { id, reason } => {
                        serde_json::json!({ "id": id, "status": "unreadable", "error": reason })
                    }
                }))
                .collect();
            print_json(&rows)?;
            return Ok(exit::OK);
        }
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
            "run",
            "runbook",
            "status",
            "started",
            "duration",
            "attempt",
            "user@host",
        ]);
        for q in &queued {
            t.add_row(vec![
                q.id.clone(),
                q.path.clone(),
                "queued".to_string(),
                String::new(),
                String::new(),
                String::new(),
                format!("{}@-", q.submitter),
            ]);
        }
        for row in &list {
            match row {
                ListedRun::Run(r) => t.add_row(vec![
                    r.id.clone(),
                    r.runbook.clone(),
                    match r.unconfirmed {
                        Some(_) => format!("{} (unconfirmed)", r.status),
                        None => outcome_word(r.status, warnings_of(&r.id)).replace('_', " "),
                    },
                    r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    duration(r),
                    r.attempt.to_string(),
                    format!("{}@{}", r.user, r.host),
                ]),
                ListedRun::Unreadable { id, .. } => {
                    t.add_row(vec![id.clone(), String::new(), "unreadable".to_string()])
                }
            };
        }
        print(&format!("{t}\n"))?;
        Ok(exit::OK)
    })
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// The run id (or a unique prefix)
    run: String,
    /// Show one step: its result, outputs and captured log
    #[arg(long)]
    step: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    output: Format,
    #[command(flatten)]
    reports: crate::report::ReportArgs,
    #[command(flatten)]
    state: StateArg,
}

pub fn show(a: ShowArgs) -> anyhow::Result<u8> {
    let location = a.state.location();
    let url = location.url.clone();
    crate::runtime()?.block_on(async move {
        let store = location.open_existing().await?;
        let Some(run) = store.get_run(&a.run).await? else {
            eprintln!("{}error{}: no run `{}` in {url}", red(), reset(), a.run);
            return Ok(exit::INVALID);
        };
        if a.reports.any() {
            // The reports are what was asked for: write them, print nothing else.
            let data = crate::report::RunData::load(&store, run).await;
            store.close().await;
            crate::report::write_all(&data?, &a.reports)?;
            return Ok(exit::OK);
        }
        let steps = store.steps(&run.id).await?;
        let approvals = store.approvals(&run.id).await?;
        store.close().await;
        if let Some(step) = &a.step {
            let mine: Vec<&cairn_state::StepRecord> =
                steps.iter().filter(|s| &s.step_id == step).collect();
            if mine.is_empty() {
                eprintln!(
                    "{}error{}: run {} has no step `{step}`",
                    red(),
                    reset(),
                    run.id
                );
                return Ok(exit::INVALID);
            }
            if a.output == Format::Json {
                print_json(&mine)?;
                return Ok(exit::OK);
            }
            let mut out = String::new();
            for s in mine {
                let label = s
                    .item
                    .map_or(s.step_id.clone(), |i| format!("{}[{i}]", s.step_id));
                out.push_str(&format!("{label}: {} (attempt {})\n", s.status, s.attempt));
                if let Some(e) = &s.error {
                    out.push_str(&format!("  error: {e}\n"));
                }
                if let Some(o) = s
                    .outputs
                    .as_ref()
                    .filter(|o| !o.is_null() && o.as_object().is_none_or(|m| !m.is_empty()))
                {
                    out.push_str(&format!("  outputs: {o}\n"));
                }
                if let Some(r) = s.result.as_ref().filter(|r| !r.is_null()) {
                    out.push_str(&format!(
                        "  result: {}\n",
                        serde_json::to_string_pretty(r)
                            .unwrap_or_default()
                            .replace('\n', "\n  ")
                    ));
                }
                if let Some(log) = &s.log_path {
                    match read_log(std::path::Path::new(log)) {
                        Ok(text) => out.push_str(&format!("  log ({log}):\n{text}\n")),
                        Err(e) => out.push_str(&format!("  log {log}: {e}\n")),
                    }
                }
            }
            print(&out)?;
            return Ok(exit::OK);
        }
        let warnings = check_warnings(&steps, |_| None);
        let warnings = if run.status == RunStatus::Succeeded {
            warnings
        } else {
            Vec::new()
        };
        if a.output == Format::Json {
            print_json(
                &serde_json::json!({ "run": with_outcome(&run, &warnings), "steps": steps, "approvals": approvals }),
            )?;
            return Ok(exit::OK);
        }
        let mut out = format!(
            "run {}  {}  {}\n  runbook {} ({})\n  started {} by {}@{} (pid {}), attempt {}, {}\n",
            run.id,
            run.runbook,
            outcome_word(run.status, &warnings).replace('_', " "),
            run.runbook,
            run.path,
            run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            run.user,
            run.host,
            run.pid,
            run.attempt,
            duration(&run)
        );
        if let Some(e) = &run.error {
            out.push_str(&format!("  error: {e}\n"));
        }
        if !warnings.is_empty() {
            let list: Vec<String> = warnings.iter().map(ToString::to_string).collect();
            out.push_str(&format!("  warnings: {}\n", list.join(", ")));
        }
        if !run.inputs.as_object().is_none_or(|m| m.is_empty()) {
            out.push_str(&format!("  inputs: {}\n", run.inputs));
        }
        if let Some(o) = run.outputs.as_ref().filter(|o| !o.is_null()) {
            out.push_str(&format!("  outputs: {o}\n"));
        }
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
            "step",
            "status",
            "attempt",
            "started",
            "duration",
            "outputs / error",
        ]);
        for s in steps.iter().filter(|s| s.item.is_none()) {
            let d = match (s.started_at, s.finished_at) {
                (Some(a), Some(b)) => crate::progress::secs((b - a).to_std().unwrap_or_default()),
                _ => String::new(),
            };
            let note = s
                .error
                .clone()
                .or_else(|| {
                    s.outputs
                        .as_ref()
                        .filter(|o| o.as_object().is_some_and(|m| !m.is_empty()))
                        .map(|o| o.to_string())
                })
                .unwrap_or_default();
            let note = if note.chars().count() > 70 {
                format!("{}…", note.chars().take(70).collect::<String>())
            } else {
                note
            };
            t.add_row(vec![
                s.step_id.clone(),
                // A step recorded running in a run that is not running was cut off mid-action.
                if s.status == StepStatus::Running && run.status != RunStatus::Running {
                    "in doubt".to_string()
                } else {
                    s.status.to_string()
                },
                s.attempt.to_string(),
                s.started_at
                    .map(|x| x.format("%H:%M:%S").to_string())
                    .unwrap_or_default(),
                d,
                note,
            ]);
        }
        out.push_str(&format!("{t}\n"));
        for ap in &approvals {
            out.push_str(&format!("  {}\n", crate::report::answer_line(ap)));
        }
        print(&out)?;
        Ok(exit::OK)
    })
}

/// The most of a step log `show --step` prints: the log holds at most 1 MiB of stdout and 1 MiB
/// of stderr, so only a file changed by hand is cut.
const MAX_LOG_BYTES: u64 = 4 * 1024 * 1024;

/// A step log as text: only a regular file (the path comes from the store, and a FIFO put in
/// its place would block `show` forever), its last [`MAX_LOG_BYTES`] when it is longer.
fn read_log(path: &std::path::Path) -> Result<String, String> {
    use std::io::{Read as _, Seek as _};
    let mut file = cairn_model::source::open_regular(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let skipped = len.saturating_sub(MAX_LOG_BYTES);
    file.seek(std::io::SeekFrom::Start(skipped))
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_LOG_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(if skipped > 0 {
        format!("[first {skipped} bytes not shown]\n{text}")
    } else {
        text.into_owned()
    })
}
