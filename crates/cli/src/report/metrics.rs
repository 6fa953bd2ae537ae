//! The Prometheus text exposition format, for node_exporter's textfile collector: the latest
//! run of a runbook as gauges, with units in the names (`_seconds`) and the runbook as a label.

use super::data::{RunData, step_secs};
use std::fmt::Write as _;

const RUN_STATUSES: &[&str] = &["running", "succeeded", "failed", "paused", "interrupted"];
const CHECK_STATES: &[(&str, u8)] = &[("ok", 0), ("warning", 1), ("critical", 2), ("unknown", 3)];

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} gauge");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        let _ = writeln!(self.out, "{name}{{{}}} {}", labels.join(","), number(value));
    }
}

pub fn render(d: &RunData) -> String {
    let mut out = String::new();
    let rb = d.run.runbook.as_str();
    let mut f = Family { out: &mut out };

    f.head(
        "cairn_run_duration_seconds",
        "Time from the run's first start to its end (or to its last heartbeat while not ended).",
    );
    f.sample(
        "cairn_run_duration_seconds",
        &[("runbook", rb)],
        d.duration_secs(),
    );

    f.head(
        "cairn_run_status",
        "Where the run stands: 1 for its status, 0 for the others.",
    );
    let status = d.run.status.to_string();
    for s in RUN_STATUSES {
        f.sample(
            "cairn_run_status",
            &[("runbook", rb), ("status", s)],
            if *s == status { 1.0 } else { 0.0 },
        );
    }

    f.head("cairn_run_success", "1 if the run succeeded, else 0.");
    f.sample(
        "cairn_run_success",
        &[("runbook", rb)],
        if status == "succeeded" { 1.0 } else { 0.0 },
    );

    f.head(
        "cairn_run_warnings",
        "Checks not ok in a run that succeeded (it succeeded with warnings when above 0).",
    );
    f.sample(
        "cairn_run_warnings",
        &[("runbook", rb)],
        d.warnings().len() as f64,
    );

    f.head(
        "cairn_run_declined",
        "Gates answered \"no\" in this run (declined or failing it).",
    );
    f.sample(
        "cairn_run_declined",
        &[("runbook", rb)],
        d.whole_steps()
            .iter()
            .filter(|s| cairn_engine::gate::is_declined(s.result.as_ref()))
            .count() as f64,
    );

    f.head(
        "cairn_run_start_timestamp_seconds",
        "When the run first started, in seconds since the Unix epoch.",
    );
    f.sample(
        "cairn_run_start_timestamp_seconds",
        &[("runbook", rb)],
        d.run.started_at.timestamp_millis() as f64 / 1000.0,
    );
    if let Some(end) = d.run.finished_at {
        f.head(
            "cairn_run_end_timestamp_seconds",
            "When the run ended, in seconds since the Unix epoch.",
        );
        f.sample(
            "cairn_run_end_timestamp_seconds",
            &[("runbook", rb)],
            end.timestamp_millis() as f64 / 1000.0,
        );
    }
    if let Some(rto) = d.runbook.as_ref().and_then(|c| c.runbook.rto.as_ref()) {
        let rto = rto.value.0.as_secs_f64();
        f.head(
            "cairn_run_rto_seconds",
            "The runbook's recovery time objective.",
        );
        f.sample("cairn_run_rto_seconds", &[("runbook", rb)], rto);
        f.head(
            "cairn_run_rto_met",
            "1 if the run ended within its recovery time objective, else 0.",
        );
        let met = d.run.finished_at.is_some() && d.duration_secs() <= rto;
        f.sample(
            "cairn_run_rto_met",
            &[("runbook", rb)],
            if met { 1.0 } else { 0.0 },
        );
    }

    let steps = d.whole_steps();
    if !steps.is_empty() {
        f.head(
            "cairn_step_duration_seconds",
            "How long the step's latest attempt took (0 if it did not run).",
        );
        for s in &steps {
            f.sample(
                "cairn_step_duration_seconds",
                &[("runbook", rb), ("step", &s.step_id)],
                step_secs(s),
            );
        }
        f.head(
            "cairn_step_attempts",
            "Attempts of the step in this run (tries and retries).",
        );
        for s in &steps {
            f.sample(
                "cairn_step_attempts",
                &[("runbook", rb), ("step", &s.step_id)],
                f64::from(s.attempt),
            );
        }
    }

    let checks = d.checks();
    if !checks.is_empty() {
        f.head(
            "cairn_check_value",
            "The value a check step measured (absent when it measured none).",
        );
        for c in &checks {
            if let Some(v) = c.value {
                let unit = c.unit.as_deref().unwrap_or("");
                f.sample(
                    "cairn_check_value",
                    &[("runbook", rb), ("check", &c.id), ("unit", unit)],
                    v,
                );
            }
        }
        f.head(
            "cairn_check_state",
            "The check's state as a monitoring plugin code: 0 ok, 1 warning, 2 critical, 3 unknown.",
        );
        for c in &checks {
            f.sample(
                "cairn_check_state",
                &[("runbook", rb), ("check", &c.id)],
                f64::from(c.code()),
            );
        }
        f.head(
            "cairn_check_status",
            "The check's state: 1 for its state, 0 for the others.",
        );
        for c in &checks {
            for (s, _) in CHECK_STATES {
                f.sample(
                    "cairn_check_status",
                    &[("runbook", rb), ("check", &c.id), ("state", s)],
                    if c.state == *s { 1.0 } else { 0.0 },
                );
            }
        }
    }
    out
}

/// A label value: `\`, `"` and line feeds escaped, as the text format requires.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: Go's float syntax (`+Inf`, `NaN`), integers without a fraction.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}
