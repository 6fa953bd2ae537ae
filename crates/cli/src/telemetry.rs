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

use crate::run_spans::RunSpans;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, Status as SpanStatus, Tracer as _, TracerProvider as _,
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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
        RunSpans::new(self.tracer.clone(), self.parent.clone(), runbook, resumed)
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
