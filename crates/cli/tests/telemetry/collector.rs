//! A test receiver of OTLP/HTTP traces: a real HTTP server on a free local port that takes
//! `POST`s of `ExportTraceServiceRequest` in protobuf (decoded with the message types generated
//! from the official OpenTelemetry protos) and keeps every span and every byte it was sent.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One span as received, its ids in hex.
#[derive(Clone, Debug)]
pub struct Got {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent: String,
    /// 0 unset, 1 ok, 2 error.
    pub status: i32,
    pub message: String,
    pub attrs: BTreeMap<String, String>,
    /// The span's events: name and attributes.
    pub events: Vec<(String, BTreeMap<String, String>)>,
    /// The resource's `service.name`.
    pub service: String,
    /// The request's path and content type.
    pub path: String,
    pub content_type: String,
}

#[derive(Default)]
struct Received {
    spans: Vec<Got>,
    bytes: Vec<u8>,
    /// Requests that did not decode.
    bad: Vec<String>,
}

pub struct Collector {
    pub url: String,
    got: Arc<Mutex<Received>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kv: &[KeyValue]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

impl Collector {
    pub fn start() -> Collector {
        let got: Arc<Mutex<Received>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, port) = std::sync::mpsc::channel();
        let into = got.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                bound
                    .send(listener.local_addr().expect("addr").port())
                    .expect("send port");
                let app = axum::Router::new().fallback(
                    move |uri: axum::http::Uri,
                          headers: axum::http::HeaderMap,
                          body: axum::body::Bytes| {
                        let into = into.clone();
                        async move {
                            let content_type = headers
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let mut got = into.lock().expect("lock");
                            got.bytes.extend_from_slice(&body);
                            match ExportTraceServiceRequest::decode(body.as_ref()) {
                                Ok(req) => {
                                    for rs in &req.resource_spans {
                                        let service = rs
                                            .resource
                                            .as_ref()
                                            .map(|r| attrs(&r.attributes))
                                            .and_then(|a| a.get("service.name").cloned())
                                            .unwrap_or_default();
                                        for ss in &rs.scope_spans {
                                            for s in &ss.spans {
                                                let status = s.status.clone().unwrap_or_default();
                                                got.spans.push(Got {
                                                    name: s.name.clone(),
                                                    trace_id: hex(&s.trace_id),
                                                    span_id: hex(&s.span_id),
                                                    parent: hex(&s.parent_span_id),
                                                    status: status.code,
                                                    message: status.message,
                                                    attrs: attrs(&s.attributes),
                                                    events: s
                                                        .events
                                                        .iter()
                                                        .map(|e| {
                                                            (e.name.clone(), attrs(&e.attributes))
                                                        })
                                                        .collect(),
                                                    service: service.clone(),
                                                    path: uri.path().to_string(),
                                                    content_type: content_type.clone(),
                                                });
                                            }
                                        }
                                    }
                                }
                                Err(e) => got.bad.push(format!("{}: {e}", uri.path())),
                            }
                            // An empty ExportTraceServiceResponse: everything accepted.
                            (
                                [("content-type", "application/x-protobuf")],
                                Vec::<u8>::new(),
                            )
                        }
                    },
                );
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let port = port
            .recv_timeout(Duration::from_secs(30))
            .expect("collector bound");
        Collector {
            url: format!("http://127.0.0.1:{port}"),
            got,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every span received so far (a request that did not decode fails the test).
    pub fn spans(&self) -> Vec<Got> {
        let got = self.got.lock().expect("lock");
        assert!(
            got.bad.is_empty(),
            "requests that are not OTLP: {:?}",
            got.bad
        );
        got.spans.clone()
    }

    /// Every byte received.
    pub fn bytes(&self) -> Vec<u8> {
        self.got.lock().expect("lock").bytes.clone()
    }

    /// Waits (up to a minute) until a span named `name` came.
    pub fn wait_for(&self, name: &str) -> Got {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| s.name == name) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no span `{name}` came; got {:#?}",
                self.spans()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
