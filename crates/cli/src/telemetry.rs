//! OpenTelemetry traces: a span for each run and each step (and each `for_each` item), exported
//! over OTLP/HTTP (protobuf) to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or to
//! `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended. With neither set nothing is built
//! and nothing is exported.
//!
//! The spans are made from the engine's events, in a sink beside the progress and the notices:
//! it sees the events after the masking door, so no attribute carries anything the door would
//! not let out; and it takes from them only names, ids, statuses, counts and the (masked)
//! error messages, never a rendered command or value. A run is the child of the W3C
//! `TRACEPARENT` of its environment when there is one; a sub-run's steps are children of the
//! `uses` step's span; a step sent to a worker (`runs_on`) carries the `traceparent` of its
//! span to the worker, whose span for running it is that span's child.
//!
//! Exporting never holds up or fails a run: spans go to a bounded queue that a thread of the
//! SDK sends in batches, each send bounded by a short timeout; a collector that cannot be
//! reached gives one warning on stderr; the end of the command waits for the last batch for
//! at most [`FLUSH`].

use cairn_engine::events::{Event, RunOutcome, Sink, Status};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, Status as SpanStatus, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter,
};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long one export may take (unless `OTEL_EXPORTER_OTLP_TIMEOUT` says otherwise).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the end of a command waits for the spans still queued.
const FLUSH: Duration = Duration::from_secs(2);
/// Spans held for export at most; past that new ones are dropped, never waited for.
const QUEUE: usize = 4096;

/// The key in a routed step's wire form that carries the W3C trace context of its span.
pub const TRACEPARENT_KEY: &str = "traceparent";

/// The exporter and the tracer of this process, when an OTLP endpoint is set.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// The context a run's span is the child of: `TRACEPARENT` from the environment, or none.
    parent: Context,
}

/// Whether an endpoint is set: the only thing looked at when telemetry is off.
fn endpoint() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

impl Telemetry {
    /// Telemetry as the environment sets it; `None` (and nothing built) without an endpoint.
    /// An exporter that cannot be built is a warning, and the command runs without it.
    pub fn from_env() -> Option<Arc<Telemetry>> {
        let endpoint = endpoint()?;
        use opentelemetry_otlp::{Protocol, WithExportConfig as _};
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        // A timeout given here would override the environment's.
        if [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .iter()
        .all(|k| std::env::var_os(k).is_none())
        {
            builder = builder.with_timeout(EXPORT_TIMEOUT);
        }
        let exporter = match builder.build() {
            Ok(e) => e,
            Err(e) => {
                warn(&format!(
                    "OpenTelemetry: no traces exported to {}: {}",
                    cairn_url::redact(&endpoint),
                    hide(&endpoint, &e.to_string())
                ));
                return None;
            }
        };
        let processor = BatchSpanProcessor::builder(WarnOnce {
            inner: exporter,
            endpoint,
            warned: AtomicBool::new(false),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(QUEUE)
                .with_scheduled_delay(Duration::from_secs(1))
                .build(),
        )
        .build();
        let service = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "cairn".to_string());
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("cairn");
        let parent = std::env::var("TRACEPARENT")
            .ok()
            .map(|tp| {
                let state = std::env::var("TRACESTATE").unwrap_or_default();
                extract(&tp, &state)
            })
            .unwrap_or_default();
        Some(Arc::new(Telemetry {
            provider,
            tracer,
            parent,
        }))
    }

    /// The spans of one run, to be told its events through [`RunSpans::sink`].
    pub fn run(&self, runbook: &cairn_model::Checked, resumed: bool) -> Arc<RunSpans> {
        let rb = &runbook.runbook;
        Arc::new(RunSpans {
            tracer: self.tracer.clone(),
            parent: self.parent.clone(),
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

    /// The span of a routed step this worker runs, the child of the step's span in the run
    /// that routed it (the `traceparent` its wire form carries).
    pub fn routed_step(&self, item: &cairn_state::StepItem, worker: &str) -> RoutedSpan {
        let parent = item
            .action
            .get(TRACEPARENT_KEY)
            .and_then(Json::as_str)
            .map(|tp| extract(tp, ""))
            .unwrap_or_else(|| self.parent.clone());
        let mut attrs = vec![
            KeyValue::new("cairn.run.id", item.run_id.clone()),
            KeyValue::new("cairn.step.id", item.step_id.clone()),
            KeyValue::new("cairn.step.attempt", i64::from(item.attempt)),
            KeyValue::new("cairn.worker", worker.to_string()),
        ];
        if let Some(k) = item.item {
            attrs.push(KeyValue::new("cairn.step.item", i64::from(k)));
        }
        let span = self
            .tracer
            .span_builder(format!("routed step {}", item.step_id))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &parent);
        RoutedSpan(span)
    }

    /// Sends what is still queued, waiting [`FLUSH`] at most (a collector that is down costs
    /// no more than that).
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown_with_timeout(FLUSH);
    }
}

/// A routed step's span on the worker that runs it.
pub struct RoutedSpan(Span);

impl RoutedSpan {
    /// Ends the span with the outcome the worker writes back (already masked).
    pub fn end(mut self, outcome: &Json) {
        match outcome.get("error") {
            None => self.0.set_status(SpanStatus::Ok),
            Some(e) => {
                let kind = e.get("kind").and_then(Json::as_str).unwrap_or("failed");
                let message = e.get("message").and_then(Json::as_str).unwrap_or(kind);
                self.0
                    .set_attribute(KeyValue::new("cairn.step.status", kind.to_string()));
                self.0.set_status(SpanStatus::error(message.to_string()));
            }
        }
        self.0.end();
    }
}

/// The context a W3C `traceparent` (and `tracestate`) names; an empty one when it is not valid.
fn extract(traceparent: &str, tracestate: &str) -> Context {
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_string(), traceparent.trim().to_string());
    if !tracestate.is_empty() {
        carrier.insert("tracestate".to_string(), tracestate.to_string());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// `text` with the credentials of the endpoint's URL hidden (an error may quote the URL).
fn hide(endpoint: &str, text: &str) -> String {
    cairn_url::secrets(endpoint)
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

fn warn(text: &str) {
    crate::output::eprint_line(&format!(
        "warning: {}",
        crate::output::escape_controls(text)
    ));
}

/// The OTLP exporter, which says once on stderr that the collector cannot be reached (the SDK
/// itself would say nothing, or say it for every batch).
#[derive(Debug)]
struct WarnOnce<E> {
    inner: E,
    endpoint: String,
    warned: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for WarnOnce<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let r = self.inner.export(batch).await;
        if let Err(e) = &r
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            warn(&format!(
                "OpenTelemetry: spans not exported to {}: {} (the run goes on without them)",
                cairn_url::redact(&self.endpoint),
                hide(&self.endpoint, &e.to_string())
            ));
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

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
