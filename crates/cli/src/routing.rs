//! Step routing (`runs_on`): an implementation of the engine's [`Actions`] port that sends a
//! step with `runs_on` to the step queue in PostgreSQL, where a `cairn worker` whose labels
//! match claims it, and waits for the outcome it writes back; every other action is performed
//! here, as without routing. The run's checkpoints, retries, masking and resume are the
//! engine's, unchanged: to the engine a routed step is an action that took a while.
//!
//! Secrets never travel: each secret's value in the action is replaced by a reference to its
//! name, read again by the worker that runs the step. An action still holding a secret in
//! another form (a filter's output, a sub-run's secret) is refused, never sent.

use crate::routed_wire;
use cairn_engine::exec::{Actions, Attempt, Call, Peers};
use cairn_engine::prepare::Prepared;
use cairn_state::{PgStore, Routed, RoutedStep};
use cairn_steps::StepError;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often a run waiting for a routed step looks at it, notifications or not.
const POLL: Duration = Duration::from_secs(1);

/// The lease of workers' claims (runs and routed steps): `CAIRN_WORKER_LEASE` seconds,
/// default 15. Every worker of a queue, and every process that routes steps to them, must
/// use the same value.
pub fn lease() -> Duration {
    std::env::var("CAIRN_WORKER_LEASE")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| *s >= 0.5 && s.is_finite())
        .map_or(cairn_state::WORKER_LEASE, Duration::from_secs_f64)
}

/// Whether any step of the runbook is routed (`runs_on`, its own or the default).
pub fn routes_steps(checked: &cairn_model::Checked) -> bool {
    let defaults = checked.runbook.defaults.as_ref();
    checked.all_steps().any(|s| s.routed_to(defaults).is_some())
}

/// A runbook with routed steps given a store that has no step queue (SQLite, memory): the
/// error, at the first `runs_on` that routes (a step's own, else the default's).
pub fn refuse_without_queue(checked: &cairn_model::Checked) -> String {
    let rb = &checked.runbook;
    let defaults = rb.defaults.as_ref();
    let span = checked
        .all_steps()
        .find_map(|s| s.routed_to(defaults))
        .map(|r| r.span)
        .unwrap_or_default();
    cairn_model::Diagnostic::error(
        span,
        "`runs_on` sends a step to a worker, and workers need a PostgreSQL state store",
    )
    .with_help(
        "run with --state postgres://… (or CAIRN_STATE) shared with `cairn worker`s whose \
         labels match, or remove `runs_on` to run every step here",
    )
    .render(
        &rb.path.display().to_string(),
        &rb.source,
        crate::output::color_stderr(),
    )
}

type Waiters = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

/// Routes the steps of runs of one runbook (and performs their other actions).
pub struct Router {
    queue: PgStore,
    local: Peers,
    /// The runbook whose `secrets` the worker reads.
    path: String,
    /// The runbook's secrets, longest value first.
    secrets: Vec<(String, String)>,
    lease: Duration,
    waiters: Waiters,
    listener: tokio::task::JoinHandle<()>,
    /// Steps found in doubt (their worker died holding a non-idempotent one): a retry of the
    /// same step fails the same way instead of running it again.
    in_doubt: Mutex<HashSet<(String, String, Option<usize>)>>,
    /// The run's spans, whose step span's `traceparent` a routed step carries to its worker.
    spans: Option<Arc<crate::run_spans::RunSpans>>,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Router {
    /// A router for runs of `checked` (its secrets are read here only to be replaced by
    /// references; the run reads and masks them itself, as always).
    pub async fn new(queue: PgStore, checked: &cairn_model::Checked) -> Router {
        let mut secrets: Vec<(String, String)> =
            cairn_engine::secrets::read_each(&checked.runbook.secrets)
                .0
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                .filter(|(_, v)| !v.is_empty())
                .collect();
        secrets.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let waiters: Waiters = Arc::default();
        let listener = {
            let waiters = waiters.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut wakeups = match queue.step_wakeups().await {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!("{e}; looking at routed steps every second");
                        return;
                    }
                };
                loop {
                    match wakeups.recv().await {
                        Some(id) => {
                            if let Some(n) = lock(&waiters).get(&id) {
                                n.notify_one();
                            }
                        }
                        None => tokio::time::sleep(POLL).await,
                    }
                }
            })
        };
        Router {
            queue,
            local: Peers::default(),
            path: std::fs::canonicalize(&checked.runbook.path)
                .unwrap_or_else(|_| checked.runbook.path.clone())
                .display()
                .to_string(),
            secrets,
            lease: lease(),
            waiters,
            listener,
            in_doubt: Mutex::default(),
            spans: None,
        }
    }

    /// This router with the run's spans: each routed step carries its span's W3C
    /// `traceparent`, for the worker's span to be its child.
    pub fn traced(mut self, spans: Option<Arc<crate::run_spans::RunSpans>>) -> Router {
        self.spans = spans;
        self
    }

    async fn route(
        &self,
        call: &Call<'_>,
        labels: &std::collections::BTreeMap<String, String>,
        action: &Prepared,
        a: &Attempt<'_>,
    ) -> Result<Json, StepError> {
        let doubt_key = (call.run_id.to_string(), call.step.to_string(), call.item);
        let in_doubt = || {
            StepError::failed(
                format!(
                    "in doubt: the worker running step `{step}` (idempotent: false) went silent; \
                     it may or may not have run: check, then `cairn resume {run} --rerun {step}` \
                     or `--skip {step}`",
                    step = call.step,
                    run = call.run_id
                ),
                None,
            )
        };
        if lock(&self.in_doubt).contains(&doubt_key) {
            return Err(in_doubt());
        }
        let Some(mut wire) = routed_wire::to_wire(action) else {
            return Err(StepError::setup(format!(
                "step `{}`: only `shell` and `argv` steps can be sent to a worker",
                call.step
            )));
        };
        let nonce = cairn_state::new_run_id();
        let names = routed_wire::by_reference(&mut wire, &self.secrets, &nonce);
        // Fail closed: whatever the door would still mask is a secret in a form the worker
        // could not read again (a filter's output, a sub-run's secret): never queued.
        if let Some(filter) = &a.filter {
            let text = wire.to_string();
            let (masked, _) = filter.filter(text.as_bytes(), true);
            if masked != text.as_bytes() {
                return Err(StepError::setup(format!(
                    "step `{}` has `runs_on`, and its action holds a secret in a form that \
                     cannot be sent by reference (only a secret used as it is can be: `{{{{ \
                     secrets.NAME }}}}`); nothing was sent",
                    call.step
                )));
            }
        }
        // The trace context of the step's span, for the worker's span to be its child.
        if let (Some(spans), Some(w)) = (&self.spans, wire.as_object_mut())
            && let Some(tp) = spans.traceparent(call.step, call.item)
        {
            w.insert(crate::telemetry::TRACEPARENT_KEY.into(), Json::String(tp));
        }
        let step = RoutedStep {
            id: RoutedStep::key(
                call.run_id,
                call.step,
                call.item.and_then(|i| u32::try_from(i).ok()),
                call.attempt,
            ),
            run_id: call.run_id.to_string(),
            step_id: call.step.to_string(),
            item: call.item.and_then(|i| u32::try_from(i).ok()),
            attempt: call.attempt,
            labels: labels.clone(),
            path: self.path.clone(),
            action: wire,
            secrets: names,
            nonce,
            timeout: a.timeout,
            idempotent: call.idempotent,
        };
        let id = step.id.clone();
        let wake = Arc::new(Notify::new());
        lock(&self.waiters).insert(id.clone(), wake.clone());
        let r = self.wait(&step, &wake, a, call, in_doubt).await;
        lock(&self.waiters).remove(&id);
        if matches!(&r, Err(StepError::Failed { message, .. }) if message.starts_with("in doubt")) {
            lock(&self.in_doubt).insert(doubt_key);
        }
        r
    }

    async fn wait(
        &self,
        step: &RoutedStep,
        wake: &Notify,
        a: &Attempt<'_>,
        call: &Call<'_>,
        in_doubt: impl Fn() -> StepError,
    ) -> Result<Json, StepError> {
        let fail = |e: cairn_state::StateError| StepError::setup(format!("step queue: {e}"));
        match self
            .queue
            .route_step(step, self.lease)
            .await
            .map_err(fail)?
        {
            Routed::Succeeded(o) => return routed_wire::decode(&o),
            Routed::Queued | Routed::Pending => {}
        }
        let since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                () = a.cancel.cancelled() => {
                    if let Err(e) = self.queue.cancel_step(&step.id).await {
                        tracing::warn!("{e}");
                    }
                    return Err(StepError::Cancelled { result: None });
                }
            }
            let st = match self.queue.step_state(&step.id, self.lease).await {
                Ok(st) => st,
                // The run's own heartbeat judges a lost database; here, look again.
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            };
            if st.status == "done" {
                return match &st.outcome {
                    Some(o) => routed_wire::decode(o),
                    None => Err(StepError::setup("a routed step ended with no outcome")),
                };
            }
            if st.stale && !step.idempotent {
                let o = routed_wire::encode(&Err(in_doubt()));
                if self
                    .queue
                    .end_step(&step.id, st.claims, &o, self.lease)
                    .await
                    .unwrap_or(false)
                {
                    return Err(in_doubt());
                }
            }
            // Never claimed within the step's timeout: no worker with these labels is there.
            if st.status == "queued"
                && let Some(t) = step.timeout
                && since.elapsed() > t
            {
                let e = StepError::failed(
                    format!(
                        "no worker with labels {} took step `{}` within its timeout",
                        crate::location::show_labels(&step.labels),
                        call.step
                    ),
                    None,
                );
                if self
                    .queue
                    .end_step(
                        &step.id,
                        st.claims,
                        &routed_wire::encode(&Err(e)),
                        self.lease,
                    )
                    .await
                    .unwrap_or(false)
                {
                    return Err(StepError::Timeout {
                        after: t,
                        result: None,
                    });
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Actions for Router {
    async fn perform(
        &self,
        call: &Call<'_>,
        action: &Prepared,
        a: &Attempt<'_>,
    ) -> Result<Json, StepError> {
        match call.runs_on {
            Some(labels) => self.route(call, labels, action, a).await,
            None => self.local.perform(action, a).await,
        }
    }

    async fn close(&self) {
        Actions::close(&self.local).await;
    }
}
