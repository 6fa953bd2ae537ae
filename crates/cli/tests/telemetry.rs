//! OpenTelemetry traces, end to end: the real `cairn` binary exporting OTLP/HTTP to a real
//! HTTP receiver that decodes the protobuf with the official proto definitions. A run's span
//! and its steps' spans, a sub-run's steps under the `uses` step, error status on what failed,
//! `TRACEPARENT` honoured, a secret in no exported byte, a routed step's span on a real
//! `cairn worker` (real PostgreSQL) in the run's trace, and a collector that is down costing a
//! run one warning and nothing else.
//!
//! No OpenTelemetry collector binary installs from the package registries this project uses
//! (crates.io, PyPI, npm, Debian), hence the receiver.

#[path = "telemetry/collector.rs"]
mod collector;
#[path = "state/common.rs"]
mod common;

use collector::{Collector, Got};
use common::{Live, PgSchema, Sandbox, signal};
use std::process::Command;

/// A secret that must not appear in any exported byte.
const CANARY: &str = "oTeL-cAnArY-5e7a91d3";

/// A parent context as a CI system sets it.
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

fn traced(mut c: Command, collector: &Collector) -> Command {
    c.env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url)
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env_remove("OTEL_EXPORTER_OTLP_TIMEOUT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .env_remove("TRACEPARENT")
        .env_remove("TRACESTATE");
    c
}

fn named<'a>(spans: &'a [Got], name: &str) -> &'a Got {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span `{name}` in {spans:#?}"))
}

fn traced_runbooks(sb: &Sandbox) {
    sb.write(
        "main.yaml",
        "cairn: 1
name: traced
secrets:
  token: { env: OTEL_CANARY }
steps:
  - id: hello
    shell: echo \"hello {{ secrets.token }}\"
  - id: nested
    needs: [hello]
    uses: child.yaml
  - id: boom
    needs: [nested]
    shell: echo \"{{ secrets.token }}\" >&2; exit 3
",
    );
    sb.write(
        "child.yaml",
        "cairn: 1
name: child
steps:
  - id: inner
    shell: echo inner
",
    );
}

#[test]
fn a_run_its_steps_and_its_sub_run_are_spans_of_one_trace_under_traceparent() {
    let collector = Collector::start();
    let sb = Sandbox::new();
    traced_runbooks(&sb);
    let mut c = traced(
        sb.command(&["run", "main.yaml", "--log-format", "json"]),
        &collector,
    );
    c.env("OTEL_CANARY", CANARY)
        .env("TRACEPARENT", format!("00-{TRACE}-{PARENT}-01"));
    let out = common::finish(c);
    out.expect(1);
    assert!(!out.stderr.contains("OpenTelemetry"), "{out}");
    let run_id = out.run_id();
    // The spans are sent before the command exits.
    let spans = collector.spans();

    let run = named(&spans, "run traced");
    assert_eq!(run.trace_id, TRACE, "the run is a child of TRACEPARENT");
    assert_eq!(run.parent, PARENT);
    assert_eq!(run.attrs["cairn.run.id"], run_id);
    assert_eq!(run.attrs["cairn.runbook"], "traced");
    assert_eq!(run.attrs["cairn.run.outcome"], "failed");
    assert_eq!(run.attrs["cairn.run.resumed"], "false");
    assert_eq!(run.status, 2, "a failed run is an error: {run:#?}");
    assert!(run.message.contains("step `boom`"), "{run:#?}");
    assert_eq!(run.service, "cairn");
    assert_eq!(run.path, "/v1/traces");
    assert_eq!(run.content_type, "application/x-protobuf");

    let hello = named(&spans, "step hello");
    assert_eq!(hello.parent, run.span_id);
    assert_eq!(hello.status, 1, "{hello:#?}");
    assert_eq!(hello.attrs["cairn.step.kind"], "shell");
    assert_eq!(hello.attrs["cairn.step.status"], "succeeded");
    assert_eq!(hello.attrs["cairn.step.attempts"], "1");

    let nested = named(&spans, "step nested");
    assert_eq!(nested.parent, run.span_id);
    assert_eq!(nested.attrs["cairn.step.kind"], "uses");
    // The sub-run's step, in the same trace, under the `uses` step.
    let inner = named(&spans, "step nested/inner");
    assert_eq!(inner.parent, nested.span_id);
    assert_eq!(inner.status, 1);

    let boom = named(&spans, "step boom");
    assert_eq!(boom.parent, run.span_id);
    assert_eq!(boom.status, 2, "a failed step is an error: {boom:#?}");
    assert_eq!(boom.attrs["cairn.step.status"], "failed");
    assert!(!boom.message.is_empty());

    for s in &spans {
        assert_eq!(s.trace_id, TRACE, "{s:#?}");
    }
    assert_eq!(spans.len(), 5, "{spans:#?}");

    // The secret was used (echoed, on stderr of a failing step) and is in no exported byte,
    // nor any 8-character piece of it.
    let bytes = collector.bytes();
    assert!(!bytes.is_empty());
    let chars: Vec<char> = CANARY.chars().collect();
    for w in chars.windows(8) {
        let piece: String = w.iter().collect();
        assert!(
            !bytes.windows(piece.len()).any(|b| b == piece.as_bytes()),
            "the canary ({piece}) was exported"
        );
    }
}

#[test]
fn the_traces_endpoint_is_used_as_it_is_the_service_is_named_and_a_bad_traceparent_ignored() {
    let collector = Collector::start();
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        "cairn: 1
name: plain
steps:
  - id: one
    shell: \"true\"
",
    );
    let mut c = traced(
        sb.command(&["run", "rb.yaml", "--log-format", "json"]),
        &collector,
    );
    c.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("{}/custom/traces", collector.url),
        )
        .env("OTEL_SERVICE_NAME", "drills")
        .env("TRACEPARENT", "not-a-trace-context");
    common::finish(c).expect(0);
    let spans = collector.spans();
    let run = named(&spans, "run plain");
    assert_eq!(run.path, "/custom/traces");
    assert_eq!(run.service, "drills");
    // A TRACEPARENT that is not one is ignored: the run is the root of its own trace.
    assert_eq!(run.parent, "");
    assert_eq!(named(&spans, "step one").trace_id, run.trace_id);
}

#[test]
fn a_collector_that_is_down_costs_one_warning_and_does_not_fail_the_run() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let sb = Sandbox::new();
    // Spans end before, during and after the sleep: more than one export fails.
    sb.write(
        "rb.yaml",
        "cairn: 1
name: unheard
steps:
  - id: a
    shell: \"true\"
  - id: b
    needs: [a]
    shell: sleep 2.5
  - id: c
    needs: [b]
    shell: \"true\"
",
    );
    let mut c = sb.command(&["run", "rb.yaml", "--log-format", "json"]);
    // Credentials in the endpoint are not shown in the warning.
    c.env(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://otel:pw-{CANARY}@127.0.0.1:{port}"),
    )
    .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let out = common::finish(c);
    out.expect(0);
    assert!(!out.stderr.contains(CANARY), "{out}");
    out.says(&format!("http://otel:***@127.0.0.1:{port}"));
    assert_eq!(out.outcome(), "succeeded");
    assert_eq!(
        out.stderr.matches("OpenTelemetry").count(),
        1,
        "one warning, not one per batch:\n{out}"
    );
    out.says("warning: OpenTelemetry: spans not exported");
}

#[test]
fn a_routed_steps_span_on_its_worker_is_the_child_of_the_runs_step_span() {
    let collector = Collector::start();
    let schema = PgSchema::new("otel_routed");
    let sb = Sandbox::with_state(&schema.url());
    sb.write(
        "rb.yaml",
        "cairn: 1
name: routed
steps:
  - id: here
    shell: echo here
  - id: on_db
    needs: [here]
    runs_on: { host: db1 }
    shell: echo on db
",
    );
    let mut w = traced(sb.command(&["worker", "--labels", "host=db1"]), &collector);
    w.env("CAIRN_WORKER_LEASE", "2");
    let worker = Live::spawn(w);
    let mut c = traced(
        sb.command(&["run", "rb.yaml", "--log-format", "json"]),
        &collector,
    );
    c.env("CAIRN_WORKER_LEASE", "2");
    let out = common::finish(c);
    out.expect(0);
    let routed = collector.wait_for("routed step on_db");
    let spans = collector.spans();
    let run = named(&spans, "run routed");
    let step = named(&spans, "step on_db");
    assert_eq!(routed.trace_id, run.trace_id, "{spans:#?}");
    assert_eq!(routed.parent, step.span_id, "{spans:#?}");
    assert_eq!(routed.attrs["cairn.run.id"], out.run_id());
    assert_eq!(routed.status, 1, "{routed:#?}");
    assert_eq!(step.parent, run.span_id);
    signal(worker.pid(), nix::sys::signal::Signal::SIGTERM);
    let stopped = worker.finish();
    assert_eq!(stopped.code, Some(0), "{stopped}");
}

#[test]
fn an_interrupted_run_still_sends_its_spans_before_it_exits() {
    let collector = Collector::start();
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        "cairn: 1
name: stopped
steps:
  - id: long
    shell: sleep 300
",
    );
    let mut live = Live::spawn(traced(
        sb.command(&["run", "rb.yaml", "--log-format", "json"]),
        &collector,
    ));
    live.wait_for(|e| e["event"] == "step_started" && e["step"] == "long");
    signal(live.pid(), nix::sys::signal::Signal::SIGINT);
    let out = live.finish();
    out.expect(130);
    // Sent before the exit: nothing is waited for here.
    let spans = collector.spans();
    let run = named(&spans, "run stopped");
    assert_eq!(run.attrs["cairn.run.outcome"], "interrupted");
    assert_eq!(run.status, 2, "{run:#?}");
    let long = named(&spans, "step long");
    assert_eq!(long.parent, run.span_id);
    assert_eq!(long.attrs["cairn.step.attempt"], "1");
}

#[test]
fn a_resumed_run_is_a_span_of_its_own_marked_resumed() {
    let collector = Collector::start();
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: flaky
steps:
  - id: once
    shell: test -f {ok} || {{ touch {ok}; exit 1; }}
",
            ok = sb.file("ok.txt")
        ),
    );
    let first = common::finish(traced(
        sb.command(&["run", "rb.yaml", "--log-format", "json"]),
        &collector,
    ));
    first.expect(1);
    let id = first.run_id();
    common::finish(traced(
        sb.command(&["resume", &id, "--log-format", "json"]),
        &collector,
    ))
    .expect(0);
    let spans = collector.spans();
    let runs: Vec<&Got> = spans.iter().filter(|s| s.name == "run flaky").collect();
    assert_eq!(runs.len(), 2, "{spans:#?}");
    assert_eq!(runs[0].attrs["cairn.run.resumed"], "false");
    assert_eq!(runs[0].status, 2);
    assert_eq!(runs[1].attrs["cairn.run.resumed"], "true");
    assert_eq!(runs[1].attrs["cairn.run.outcome"], "succeeded");
    assert_eq!(runs[1].status, 1);
    // One run id, two traces: the resume is its own command.
    assert_eq!(runs[0].attrs["cairn.run.id"], id);
    assert_eq!(runs[1].attrs["cairn.run.id"], id);
    assert_ne!(runs[0].trace_id, runs[1].trace_id);
    let resumed_step = spans
        .iter()
        .find(|s| s.name == "step once" && s.trace_id == runs[1].trace_id)
        .unwrap_or_else(|| panic!("no step span in the resume's trace: {spans:#?}"));
    assert_eq!(resumed_step.status, 1);
    assert_eq!(resumed_step.parent, runs[1].span_id);
}

#[test]
fn for_each_items_are_children_of_their_step_and_a_retry_is_an_event() {
    let collector = Collector::start();
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: items
steps:
  - id: each
    for_each: [a, b]
    shell: echo {{{{ item }}}}
  - id: again
    retry: {{ attempts: 2, delay: 10ms }}
    shell: test -f {flag} || {{ touch {flag}; exit 1; }}
",
            flag = sb.file("flag")
        ),
    );
    common::finish(traced(
        sb.command(&["run", "rb.yaml", "--log-format", "json"]),
        &collector,
    ))
    .expect(0);
    let spans = collector.spans();
    let each = named(&spans, "step each");
    for name in ["step each[0]", "step each[1]"] {
        let item = named(&spans, name);
        assert_eq!(item.parent, each.span_id, "{item:#?}");
        assert_eq!(item.status, 1);
    }
    assert_eq!(named(&spans, "step each[1]").attrs["cairn.step.item"], "1");
    let again = named(&spans, "step again");
    assert_eq!(again.attrs["cairn.step.attempts"], "2");
    assert_eq!(again.attrs["cairn.step.attempt"], "2");
    assert_eq!(again.status, 1, "it succeeded on its second attempt");
    let retry = again
        .events
        .iter()
        .find(|(name, _)| name == "retry")
        .unwrap_or_else(|| panic!("no retry event: {again:#?}"));
    assert_eq!(retry.1["cairn.step.attempt"], "1");
    assert_eq!(retry.1["exception.message"], "exit code 1");
}

#[test]
fn a_silent_collector_holds_the_end_of_a_run_only_briefly() {
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for c in silent.incoming().take(8) {
            open.push(c);
        }
    });
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        "cairn: 1
name: unanswered
steps:
  - id: one
    shell: \"true\"
",
    );
    let mut c = sb.command(&["run", "rb.yaml", "--log-format", "json"]);
    c.env("OTEL_EXPORTER_OTLP_ENDPOINT", &url)
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TIMEOUT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
    let began = std::time::Instant::now();
    let out = common::finish(c);
    let took = began.elapsed();
    out.expect(0);
    // The export times out after 2 s and the flush waits 2 s at most: an unbounded wait for
    // the silent collector would hang here. The bound is generous for a loaded machine.
    assert!(took < std::time::Duration::from_secs(15), "{took:?}\n{out}");
    drop(held);
}

#[test]
fn a_queued_run_on_a_worker_exports_its_spans() {
    let collector = Collector::start();
    let schema = PgSchema::new("otel_queued");
    let sb = Sandbox::with_state(&schema.url());
    sb.write(
        "rb.yaml",
        "cairn: 1
name: queued
steps:
  - id: one
    shell: echo one
",
    );
    let mut w = traced(sb.command(&["worker"]), &collector);
    w.env("CAIRN_WORKER_LEASE", "2");
    let worker = Live::spawn(w);
    let submitted = sb.cairn(&["submit", "rb.yaml"]);
    submitted.expect(0);
    let id = submitted.stdout.trim().to_string();
    let run = collector.wait_for("run queued");
    assert_eq!(run.attrs["cairn.run.id"], id);
    assert_eq!(run.status, 1);
    let one = collector.wait_for("step one");
    assert_eq!(one.parent, run.span_id);
    signal(worker.pid(), nix::sys::signal::Signal::SIGTERM);
    let stopped = worker.finish();
    assert_eq!(stopped.code, Some(0), "{stopped}");
}
