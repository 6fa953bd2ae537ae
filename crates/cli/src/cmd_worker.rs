//! `cairn worker`: claim queued runs whose wanted labels this worker's labels match, run each
//! with the engine (a run started, or resumed where a worker that stopped heartbeating left
//! it), heartbeat what it holds, and stop cleanly on SIGTERM or Ctrl-C: claim nothing more,
//! interrupt the runs it holds (their steps are stopped and `finally` runs, as for `cairn
//! run`) and hand them back to the queue, where the next worker resumes them.

use crate::exit;
use crate::location::{Location, open_queue_pooled, parse_labels, show_labels};
use crate::progress::{LogFormat, Progress};
use crate::routing::{Router, lease};
use cairn_engine::events::RunOutcome;
use cairn_engine::exec::ActionPort;
use cairn_engine::plan::Invocation;
use cairn_engine::resume::{ResumeError, ResumeOptions, Resumed, resume};
use cairn_engine::run::{RunError, RunOptions, RunReport, execute};
use cairn_state::{ItemClaim, PgStore, QueueItem, QueueStatus, RunStatus, StepItem, Store};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// An idle worker looks at the queue at least this often, notifications or not.
const POLL: Duration = Duration::from_secs(1);

#[derive(clap::Args)]
pub struct Args {
    /// This worker's labels: it claims runs whose wanted labels are all among them
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_labels)]
    labels: Option<BTreeMap<String, String>>,
    /// Runs held at once
    #[arg(long, env = "CAIRN_WORKER_CONCURRENCY", default_value_t = 1)]
    concurrency: u32,
    /// Independent steps of one run at once
    #[arg(long, default_value_t = 8)]
    step_concurrency: usize,
    /// Pooled PostgreSQL connections (default: concurrency + 2, at most 8). Besides them the
    /// worker holds one for checkpoints, one LISTEN, and one per held run that routes steps:
    /// 16 workers at the defaults fit PostgreSQL's default max_connections of 100
    #[arg(long, env = "CAIRN_WORKER_POOL", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pool: Option<u32>,
    /// State store: postgres://... (the queue lives in PostgreSQL)
    #[arg(long, env = "CAIRN_STATE", value_name = "URL")]
    state: Option<String>,
    /// text (progress on stderr) or json (one event per line on stdout)
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// A worker's pooled connections unless `--pool` says: one per run it holds, one for its
/// claims and heartbeats, one for reads beside them; never more than a store's default.
fn default_pool(concurrency: u32) -> u32 {
    concurrency.saturating_add(2).min(8)
}

/// The runs this worker holds: each one's claim, and the token that stops it.
type Held = Arc<Mutex<HashMap<String, (ItemClaim, CancellationToken)>>>;

/// What every run of this worker shares.
struct Worker {
    id: String,
    labels: BTreeMap<String, String>,
    queue: PgStore,
    store: Arc<dyn Store>,
    stop: CancellationToken,
    held: Held,
    /// The routed steps it performs.
    steps: Held,
    step_concurrency: usize,
    log_format: LogFormat,
    logs: std::path::PathBuf,
    /// Spans of the runs and routed steps it performs, when an OTLP endpoint is set.
    telemetry: Option<Arc<crate::telemetry::Telemetry>>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let labels = args.labels.clone().unwrap_or_default();
    let concurrency = args.concurrency.max(1);
    let telemetry = crate::telemetry::Telemetry::from_env();
    let exported = telemetry.clone();
    let code = crate::runtime()?.block_on(async move {
        let location = Location::resolve(args.state.as_deref());
        let pool = args.pool.unwrap_or_else(|| default_pool(concurrency));
        let queue = open_queue_pooled(&location, Some(pool)).await?;
        let stop = CancellationToken::new();
        crate::signals::cancel_on_signals(stop.clone());
        let drain = CancellationToken::new();
        crate::signals::drain_on_sigusr1(drain.clone());
        let worker = Arc::new(Worker {
            id: cairn_state::new_run_id(),
            labels: labels.clone(),
            store: Arc::new(queue.clone()),
            queue,
            stop: stop.clone(),
            held: Arc::default(),
            steps: Arc::default(),
            step_concurrency: args.step_concurrency.max(1),
            log_format: args.log_format,
            logs: crate::run_options::logs_dir(&location.url),
            telemetry,
        });
        worker
            .queue
            .register_worker(&worker.id, &labels, concurrency)
            .await?;
        eprintln!(
            "worker {} on {} (pid {}): labels {}, up to {concurrency} run(s) at once, \
             {pool} pooled connection(s)",
            worker.id,
            cairn_state::current_host(),
            std::process::id(),
            show_labels(&labels)
        );
        let heartbeat = tokio::spawn(heartbeat(worker.clone()));
        let wakeup = Arc::new(tokio::sync::Notify::new());
        let listener = match worker.queue.queue_wakeups().await {
            Ok(mut w) => {
                let wakeup = wakeup.clone();
                Some(tokio::spawn(async move {
                    loop {
                        if w.recv().await {
                            wakeup.notify_one();
                        } else {
                            tokio::time::sleep(POLL).await;
                        }
                    }
                }))
            }
            Err(e) => {
                tracing::warn!("{e}; polling the queue every second");
                None
            }
        };
        let lease = lease();
        let mut runs = tokio::task::JoinSet::new();
        let mut steps = tokio::task::JoinSet::new();
        let busy = |stop: &CancellationToken| stop.is_cancelled() || drain.is_cancelled();
        while !busy(&stop) {
            // Routed steps first: a run somewhere waits for each.
            while steps.len() < concurrency as usize && !busy(&stop) {
                match worker.queue.claim_next_step(&worker.id, &labels, lease).await {
                    Ok(Some(item)) => {
                        steps.spawn(hold_step(worker.clone(), item));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("{e}; trying again");
                        break;
                    }
                }
            }
            while runs.len() < concurrency as usize && !busy(&stop) {
                match worker.queue.claim_next(&worker.id, &labels, lease).await {
                    Ok(Some(item)) => {
                        runs.spawn(hold(worker.clone(), item));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("{e}; trying again");
                        break;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = drain.cancelled() => {}
                Some(_) = runs.join_next(), if !runs.is_empty() => {}
                Some(_) = steps.join_next(), if !steps.is_empty() => {}
                _ = tokio::time::timeout(POLL, wakeup.notified()) => {}
            }
        }
        if !stop.is_cancelled() {
            eprintln!(
                "worker {}: draining: claiming nothing more, finishing {} run(s) and {} routed step(s) held (SIGTERM to interrupt them and hand them back)",
                worker.id,
                runs.len(),
                steps.len()
            );
        }
        // Draining: the runs and steps held end by themselves (or are cancelled with `stop` by
        // a SIGTERM meanwhile); stopping: they were cancelled with `stop`. Either way, wait
        // for them to end or hand back.
        while runs.join_next().await.is_some() {}
        while steps.join_next().await.is_some() {}
        heartbeat.abort();
        if let Some(l) = listener {
            l.abort();
        }
        if let Err(e) = worker.queue.stop_worker(&worker.id).await {
            tracing::warn!("{e}");
        }
        worker.store.close().await;
        eprintln!("worker {} stopped", worker.id);
        Ok(exit::OK)
    });
    if let Some(t) = &exported {
        t.shutdown();
    }
    code
}

/// Every [`HEARTBEAT`]: the worker and its held runs are alive. A run another worker took
/// over (this one was silent past the lease) is stopped here.
/// A worker that could not heartbeat for the lease (the database unreachable, a network
/// cut) stops the runs it holds: another worker may have taken them over meanwhile.
async fn heartbeat(worker: Arc<Worker>) {
    let lease = lease();
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(lease / 5).await;
        let held: Vec<ItemClaim> = lock(&worker.held)
            .values()
            .map(|(c, _)| c.clone())
            .collect();
        let steps: Vec<ItemClaim> = lock(&worker.steps)
            .values()
            .map(|(c, _)| c.clone())
            .collect();
        let beat = match worker.queue.heartbeat_worker(&worker.id, &held).await {
            Ok(lost) => match worker.queue.heartbeat_steps(&worker.id, &steps).await {
                Ok(lost_steps) => Ok((lost, lost_steps)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match beat {
            Err(e) if renewed.elapsed() >= lease => {
                tracing::warn!(
                    "{e}; no heartbeat for {lease:?}: stopping the runs and routed steps held"
                );
                for (_, cancel) in lock(&worker.held)
                    .values()
                    .chain(lock(&worker.steps).values())
                {
                    cancel.cancel();
                }
            }
            Ok((lost, lost_steps)) => {
                renewed = tokio::time::Instant::now();
                for claim in lost_steps {
                    if let Some((_, cancel)) = lock(&worker.steps).get(&claim.id) {
                        tracing::warn!(
                            step = %claim.id,
                            "this routed step was cancelled by its run or taken over by another worker; stopping it here"
                        );
                        cancel.cancel();
                    }
                }
                for claim in lost {
                    if let Some((_, cancel)) = lock(&worker.held).get(&claim.id) {
                        tracing::warn!(
                            run_id = %claim.id,
                            "another worker took this run over (this worker was silent past its lease); stopping it here"
                        );
                        cancel.cancel();
                    }
                }
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<String, (ItemClaim, CancellationToken)>> {
    held.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Performs one claimed routed step and writes its outcome back (a worker that stops hands an
/// idempotent one back to the queue instead).
async fn hold_step(worker: Arc<Worker>, item: StepItem) {
    let claim = item.claim();
    let cancel = worker.stop.child_token();
    lock(&worker.steps).insert(item.id.clone(), (claim.clone(), cancel.clone()));
    let ran_on = crate::routed_step::RanOn {
        worker: &worker.id,
        labels: &worker.labels,
    };
    let span = worker
        .telemetry
        .as_ref()
        .map(|t| t.routed_step(&item, &worker.id));
    let outcome = crate::routed_step::perform(&item, &ran_on, &cancel).await;
    if let Some(span) = span {
        span.end(&outcome);
    }
    lock(&worker.steps).remove(&item.id);
    // Interrupted here (this worker stops, lost its lease, was taken over, or the run
    // cancelled the step): an idempotent step goes back to the queue for another worker (a
    // no-op when another holds it already); a non-idempotent one is in doubt.
    let interrupted = cancel.is_cancelled() && outcome.get("ok").is_none();
    let written = if interrupted && item.idempotent {
        eprintln!("routed step {}: interrupted here, handed back", item.id);
        worker.queue.hand_back_step(&claim).await
    } else if interrupted && worker.stop.is_cancelled() {
        let e = cairn_steps::StepError::failed(
            format!(
                "in doubt: worker {} stopped while running step `{}` (idempotent: false); it may \
                 or may not have done its work: check, then `cairn resume {} --rerun {1}` or \
                 `--skip {1}`",
                worker.id, item.step_id, item.run_id
            ),
            None,
        );
        worker
            .queue
            .finish_step(&claim, &crate::routed_wire::encode(&Err(e)))
            .await
    } else if interrupted {
        // Lost: the run's process judges it in doubt once its lease has run out.
        eprintln!("routed step {}: interrupted here (lease lost)", item.id);
        Ok(true)
    } else {
        eprintln!(
            "routed step {}: {}",
            item.id,
            if outcome.get("ok").is_some() {
                "succeeded"
            } else {
                "failed"
            }
        );
        worker.queue.finish_step(&claim, &outcome).await
    };
    match written {
        Ok(true) => {}
        Ok(false) => tracing::warn!(step = %item.id, "another worker holds this routed step now"),
        Err(e) => tracing::warn!(step = %item.id, "{e}"),
    }
}

/// Runs one claimed item to where it can be let go, and records that in the queue.
async fn hold(worker: Arc<Worker>, item: QueueItem) {
    let claim = item.claim();
    let cancel = worker.stop.child_token();
    lock(&worker.held).insert(item.id.clone(), (claim.clone(), cancel.clone()));
    let (status, outcome) = work(&worker, &item, cancel).await;
    lock(&worker.held).remove(&item.id);
    eprintln!("run {}: {outcome}", item.id);
    match worker.queue.release_item(&claim, status, &outcome).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(run_id = %item.id, "another worker holds this run now"),
        Err(e) => tracing::warn!(run_id = %item.id, "{e}"),
    }
}

/// Starts the run, or resumes it when a run of this id exists (a worker held it before and
/// stopped heartbeating, or handed it back).
async fn work(
    worker: &Worker,
    item: &QueueItem,
    cancel: CancellationToken,
) -> (QueueStatus, String) {
    let templates = Arc::new(cairn_template::Templates::new());
    let mut opts = RunOptions {
        concurrency: worker.step_concurrency,
        // Who asked for the run, as a run started by `cairn run` records who typed it.
        user: item.submitter.clone(),
        logs: worker.logs.clone(),
        cancel,
        run_id: Some(item.id.clone()),
        ..RunOptions::default()
    };
    let progress: Arc<dyn cairn_engine::events::Sink> =
        Arc::new(Progress::for_run(worker.log_format, &item.id));
    if item.claims > 1
        && let Err(e) = worker.queue.interrupt_abandoned(&item.id).await
    {
        return (QueueStatus::Queued, format!("handed back: {e}"));
    }
    let existing = match worker.store.get_run(&item.id).await {
        Ok(r) => r.filter(|r| r.id == item.id),
        Err(e) => return (QueueStatus::Queued, format!("handed back: {e}")),
    };
    if let Some(run) = existing {
        // A run that ended before its worker could record it in the queue: taken over, it is
        // only recorded, never resumed (a resume would run its failed steps again).
        if matches!(run.status, RunStatus::Succeeded | RunStatus::Failed) {
            return (QueueStatus::Done, run.status.to_string());
        }
        // The run's notifiers, from its runbook as it is now and the inputs it started with
        // (a runbook that cannot be read is refused by the resume itself).
        let (mut sink, notifying) = match cairn_engine::resume::runbook_of(&run.path, &templates) {
            Some(checked) => {
                match crate::notifying::for_run(&checked, &templates, &run.inputs, progress) {
                    Ok(pair) => pair,
                    Err(e) => {
                        return (QueueStatus::Held, format!("held for a human: {e}"));
                    }
                }
            }
            None => (progress, None),
        };
        if let Some(checked) = cairn_engine::resume::runbook_of(&run.path, &templates) {
            let spans = worker.telemetry.as_ref().map(|t| t.run(&checked, true));
            opts.actions = router(worker, &checked, spans.clone()).await;
            if let Some(spans) = spans {
                sink = spans.sink(sink);
            }
        }
        let r = resume(
            &item.id,
            templates,
            worker.store.clone(),
            sink,
            opts,
            &ResumeOptions::default(),
        )
        .await;
        if let Some(n) = &notifying {
            n.finish().await;
        }
        return match r {
            Ok(Resumed::AlreadyDone { .. }) => (QueueStatus::Done, "succeeded".to_string()),
            Ok(Resumed::Ran(report)) => ended(worker, &report),
            Err(ResumeError::Raced(_)) => (
                QueueStatus::Queued,
                "handed back: it changed while being resumed".to_string(),
            ),
            Err(e) => (
                QueueStatus::Held,
                format!("held for a human: {e} (cairn resume {})", item.id),
            ),
        };
    }
    let checked = match crate::load(std::path::Path::new(&item.path), &templates) {
        Ok(Ok(c)) => Arc::new(c),
        Ok(Err(_)) => {
            return (
                QueueStatus::Done,
                format!("not run: {} is not a valid runbook here", item.path),
            );
        }
        Err(e) => return (QueueStatus::Done, format!("not run: {e:#}")),
    };
    let inv = Invocation {
        sets: item.sets.clone(),
        inputs_file: item.inputs.clone(),
    };
    // Inputs that do not resolve are refused by the run itself, with its own message.
    let inputs =
        cairn_engine::inputs::resolve(&checked.runbook, &inv.sets, inv.inputs_file.as_ref())
            .ok()
            .and_then(|i| serde_json::to_value(i).ok())
            .unwrap_or_default();
    let (sink, notifying) = match crate::notifying::for_run(&checked, &templates, &inputs, progress)
    {
        Ok(pair) => pair,
        Err(e) => return (QueueStatus::Done, format!("not run: {e}")),
    };
    let spans = worker.telemetry.as_ref().map(|t| t.run(&checked, false));
    opts.actions = router(worker, &checked, spans.clone()).await;
    let sink = match spans {
        Some(spans) => spans.sink(sink),
        None => sink,
    };
    let ran = execute(checked, templates, &inv, worker.store.clone(), sink, opts).await;
    if let Some(n) = &notifying {
        n.finish().await;
    }
    match ran {
        Ok(report) => ended(worker, &report),
        Err(RunError::Locked(holder)) => (QueueStatus::Done, format!("failed: {holder}")),
        Err(e) => (QueueStatus::Done, format!("not run: {e}")),
    }
}

/// Routes the runbook's `runs_on` steps through the queue; none for a runbook without them.
async fn router(
    worker: &Worker,
    checked: &cairn_model::Checked,
    spans: Option<Arc<crate::run_spans::RunSpans>>,
) -> Option<ActionPort> {
    crate::routing::routes_steps(checked).then_some(ActionPort(Arc::new(
        Router::new(worker.queue.clone(), checked)
            .await
            .traced(spans),
    )))
}

/// Where a run that the engine let go of leaves its queued item.
fn ended(worker: &Worker, report: &RunReport) -> (QueueStatus, String) {
    if let Some(e) = &report.store_error {
        return (
            QueueStatus::Held,
            format!("held for a human: its state could not be recorded: {e}"),
        );
    }
    match report.outcome {
        RunOutcome::Paused => (
            QueueStatus::Paused,
            format!(
                "paused for an approval: cairn approve {} STEP, then cairn resume {0} (or cairn submit --requeue {0})",
                report.run_id
            ),
        ),
        RunOutcome::Interrupted if worker.stop.is_cancelled() => (
            QueueStatus::Queued,
            format!("handed back by worker {} as it stopped", worker.id),
        ),
        RunOutcome::Interrupted => (QueueStatus::Queued, "handed back: interrupted".to_string()),
        o => (QueueStatus::Done, o.as_str().to_string()),
    }
}
