//! The spans of one run, made from its events: the run's, each step's (and `for_each` item's),
//! a sub-run's steps under the `uses` step's, each ended with the status its event gives; and
//! the W3C `traceparent` of an open step span, for a routed step to carry to its worker.

use cairn_engine::events::{Event, RunOutcome, Sink, Status};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, Status as SpanStatus, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The open spans of one run, made from its events.
pub struct RunSpans {
    tracer: SdkTracer,
    parent: Context,
    runbook: String,
    path: String,
    resumed: bool,
    /// Each step's kind, by id (a sub-run's steps are not in it).
    kinds: HashMap<String, &'static str>,
    open: Mutex<Open>,
}

/// A span still open, and the context its children start under.
struct Opened {
    span: Span,
    cx: Context,
    /// The order spans were opened in: of two candidates, the later one wins.
    seq: u64,
}

#[derive(Default)]
struct Open {
    run: Option<Opened>,
    /// By step path (`deploy`, or `deploy/migrate` for a sub-run's step) and item.
    steps: HashMap<(String, Option<usize>), Opened>,
    seq: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RunSpans {
    /// The spans of a run of `runbook`, children of `parent` (an empty context: a new trace).
    pub fn new(
        tracer: SdkTracer,
        parent: Context,
        runbook: &cairn_model::Checked,
        resumed: bool,
    ) -> Arc<RunSpans> {
        let rb = &runbook.runbook;
        Arc::new(RunSpans {
            tracer,
            parent,
            runbook: rb.name.value.clone(),
            path: rb.path.display().to_string(),
            resumed,
            kinds: runbook
                .all_steps()
                .map(|s| (s.id.value.clone(), s.kind.name()))
                .collect(),
            open: Mutex::default(),
        })
    }

    /// `inner` with this run's spans made from the events it is told.
    pub fn sink(self: &Arc<Self>, inner: Arc<dyn Sink>) -> Arc<dyn Sink> {
        Arc::new(Traced {
            spans: self.clone(),
            inner,
        })
    }

    /// The W3C `traceparent` of the open span of `step` (and `item`): of this run's step, or
    /// else of a sub-run's step of that id (the latest opened), for a worker's span to be its
    /// child.
    pub fn traceparent(&self, step: &str, item: Option<usize>) -> Option<String> {
        let open = lock(&self.open);
        let suffix = format!("/{step}");
        let found = open.steps.get(&(step.to_string(), item)).or_else(|| {
            open.steps
                .iter()
                .filter(|((path, i), _)| *i == item && path.ends_with(&suffix))
                .max_by_key(|(_, o)| o.seq)
                .map(|(_, o)| o)
        })?;
        let mut carrier: HashMap<String, String> = HashMap::new();
        TraceContextPropagator::new().inject_context(&found.cx, &mut carrier);
        carrier.remove("traceparent")
    }

    fn start(
        &self,
        open: &mut Open,
        name: String,
        parent: &Context,
        attrs: Vec<KeyValue>,
        at: SystemTime,
    ) -> Opened {
        open.seq += 1;
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(at)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, parent);
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        Opened {
            span,
            cx,
            seq: open.seq,
        }
    }

    /// The run's span, opened on its first event.
    fn ensure_run(&self, open: &mut Open) -> Context {
        if let Some(r) = &open.run {
            return r.cx.clone();
        }
        let attrs = vec![
            KeyValue::new("cairn.runbook", self.runbook.clone()),
            KeyValue::new("cairn.runbook.path", self.path.clone()),
            KeyValue::new("cairn.run.resumed", self.resumed),
        ];
        let r = self.start(
            open,
            format!("run {}", self.runbook),
            &self.parent.clone(),
            attrs,
            SystemTime::now(),
        );
        let cx = r.cx.clone();
        open.run = Some(r);
        cx
    }

    /// The context a step's span starts under: the run's, or, for a sub-run's step
    /// (`parent/step`), the `uses` step's.
    fn parent_of(&self, open: &mut Open, path: &str) -> Context {
        if let Some((up, _)) = path.rsplit_once('/') {
            let found = open.steps.get(&(up.to_string(), None)).or_else(|| {
                open.steps
                    .iter()
                    .filter(|((p, _), _)| p == up)
                    .max_by_key(|(_, o)| o.seq)
                    .map(|(_, o)| o)
            });
            if let Some(o) = found {
                return o.cx.clone();
            }
        }
        self.ensure_run(open)
    }

    /// The span of `step` (and `item`), opened now (or `duration` ago) if it is not open.
    fn ensure_step<'a>(
        &self,
        open: &'a mut Open,
        step: &str,
        item: Option<usize>,
        at: SystemTime,
    ) -> &'a mut Opened {
        let key = (step.to_string(), item);
        if !open.steps.contains_key(&key) {
            let parent = match item {
                // An item's span is a child of its step's.
                Some(_) => {
                    self.ensure_step(open, step, None, at);
                    open.steps
                        .get(&(step.to_string(), None))
                        .map(|o| o.cx.clone())
                        .unwrap_or_default()
                }
                None => self.parent_of(open, step),
            };
            let mut attrs = vec![KeyValue::new("cairn.step.id", step.to_string())];
            if let Some(kind) = self.kinds.get(step) {
                attrs.push(KeyValue::new("cairn.step.kind", *kind));
            }
            let name = match item {
                Some(k) => {
                    attrs.push(KeyValue::new("cairn.step.item", k as i64));
                    format!("step {step}[{k}]")
                }
                None => format!("step {step}"),
            };
            let o = self.start(open, name, &parent, attrs, at);
            open.steps.insert(key.clone(), o);
        }
        open.steps.get_mut(&key).expect("inserted above")
    }

    fn record(&self, event: &Event) {
        let mut open = lock(&self.open);
        let open = &mut *open;
        match event {
            Event::RunStarted { run_id, steps, .. } => {
                self.ensure_run(open);
                if let Some(r) = &mut open.run {
                    r.span
                        .set_attribute(KeyValue::new("cairn.run.id", run_id.clone()));
                    r.span
                        .set_attribute(KeyValue::new("cairn.run.steps", *steps as i64));
                }
            }
            Event::StepStarted {
                step,
                item,
                attempt,
                ..
            } => {
                let o = self.ensure_step(open, step, *item, SystemTime::now());
                o.span
                    .set_attribute(KeyValue::new("cairn.step.attempt", i64::from(*attempt)));
                if *attempt > 1 {
                    o.span.add_event(
                        "attempt",
                        vec![KeyValue::new("cairn.step.attempt", i64::from(*attempt))],
                    );
                }
            }
            Event::StepRetrying {
                step,
                item,
                attempt,
                delay,
                error,
            } => {
                let o = self.ensure_step(open, step, *item, SystemTime::now());
                o.span.add_event(
                    "retry",
                    vec![
                        KeyValue::new("cairn.step.attempt", i64::from(*attempt)),
                        KeyValue::new("cairn.retry.delay_ms", delay.as_millis() as i64),
                        KeyValue::new("exception.message", error.clone()),
                    ],
                );
            }
            Event::StepFinished {
                step,
                item,
                status,
                attempts,
                duration,
                error,
                ..
            } => {
                let began = SystemTime::now()
                    .checked_sub(*duration)
                    .unwrap_or_else(SystemTime::now);
                self.ensure_step(open, step, *item, began);
                if let Some(mut o) = open.steps.remove(&(step.clone(), *item)) {
                    o.span
                        .set_attribute(KeyValue::new("cairn.step.status", status.to_string()));
                    o.span
                        .set_attribute(KeyValue::new("cairn.step.attempts", i64::from(*attempts)));
                    match (status, error) {
                        (Status::Succeeded, _) => o.span.set_status(SpanStatus::Ok),
                        (Status::Failed, e) => o.span.set_status(SpanStatus::error(
                            e.clone().unwrap_or_else(|| status.to_string()),
                        )),
                        _ => {}
                    }
                    o.span.end();
                }
            }
            Event::ApprovalWaiting { step, .. } => {
                let o = self.ensure_step(open, step, None, SystemTime::now());
                o.span.add_event("approval waiting", Vec::new());
            }
            Event::ApprovalAnswered { step, approved, .. } => {
                let o = self.ensure_step(open, step, None, SystemTime::now());
                o.span.add_event(
                    "approval answered",
                    vec![KeyValue::new("cairn.approval.approved", *approved)],
                );
            }
            Event::ApprovalNote { .. } => {}
            Event::RunFinished {
                run_id,
                outcome,
                steps,
                ..
            } => {
                // Steps still open (an interrupted run): ended with the run.
                for (_, mut o) in open.steps.drain() {
                    o.span.end();
                }
                self.ensure_run(open);
                if let Some(mut r) = open.run.take() {
                    r.span
                        .set_attribute(KeyValue::new("cairn.run.id", run_id.clone()));
                    r.span
                        .set_attribute(KeyValue::new("cairn.run.outcome", outcome.as_str()));
                    match outcome {
                        RunOutcome::Succeeded | RunOutcome::SucceededWithWarnings => {
                            r.span.set_status(SpanStatus::Ok);
                        }
                        RunOutcome::Failed => {
                            let why = steps
                                .iter()
                                .find_map(|s| {
                                    s.error.as_ref().map(|e| format!("step `{}`: {e}", s.id))
                                })
                                .unwrap_or_else(|| "failed".to_string());
                            r.span.set_status(SpanStatus::error(why));
                        }
                        RunOutcome::Interrupted => {
                            r.span.set_status(SpanStatus::error("interrupted"));
                        }
                        RunOutcome::Paused => {}
                    }
                    r.span.end();
                }
            }
        }
    }
}

/// The sink that makes the spans, then passes each event on.
struct Traced {
    spans: Arc<RunSpans>,
    inner: Arc<dyn Sink>,
}

impl Sink for Traced {
    fn emit(&self, event: &Event) {
        self.spans.record(event);
        self.inner.emit(event);
    }
}
