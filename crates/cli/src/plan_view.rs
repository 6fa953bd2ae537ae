//! The dry-run as people and CI read it: `cairn plan` and `cairn run --dry-run`.

use crate::exit;
use crate::inputs::InputArgs;
use cairn_engine::plan::{Plan, PlannedStep};
use cairn_engine::prepare::{Prepared, fmt_dur};
use std::fmt::Write as _;

#[derive(Clone, Copy, clap::ValueEnum, PartialEq)]
pub enum Format {
    Text,
    Json,
}

/// `SOURCE_DATE_EPOCH` (the reproducible-builds convention) fixes the plan's `run.started_at`.
pub fn plan_time() -> chrono::DateTime<chrono::Utc> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_else(chrono::Utc::now)
}

/// Print the plan of runbook `file` as `output`; with `probe`, reads run for real.
pub fn show(
    file: &std::path::Path,
    inputs: &InputArgs,
    output: Format,
    probe: bool,
) -> anyhow::Result<u8> {
    let templates = cairn_template::Templates::new();
    let checked = match crate::load(file, &templates)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let inv = inputs.invocation(&checked.runbook)?;
    let mut prober = if probe {
        // Ctrl-C stops the probe at once (only reads run); no cancellation dance is needed.
        let cancel = tokio_util::sync::CancellationToken::new();
        Some(cairn_engine::probe::Prober::new(cancel)?)
    } else {
        None
    };
    let plan = match cairn_engine::plan::plan_with(
        &checked,
        &templates,
        &inv,
        plan_time(),
        prober
            .as_mut()
            .map(|p| p as &mut dyn cairn_engine::plan::Probing),
    ) {
        Ok(p) => p,
        Err(e) => {
            crate::output::error(&e);
            return Ok(exit::INVALID);
        }
    };
    // What the plan prints leaves through the engine's masking door, like everything a run
    // writes: the plan's own, built with the run's secret reader and masks.
    let door = &plan.door;
    match output {
        Format::Json => crate::output::print_json(&door.json(&serde_json::to_value(&plan)?))?,
        Format::Text => crate::output::print(&door.text(&text(&plan)))?,
    }
    // A rehearsal that met a failing read or an unreachable target fails, for CI to see.
    let probe_failed = plan
        .steps
        .iter()
        .any(|s| s.probe.as_ref().is_some_and(|p| p.error.is_some()))
        || plan.reachability.iter().any(|r| r.reachable == Some(false));
    Ok(if probe_failed {
        exit::STEP_FAILED
    } else {
        exit::OK
    })
}

fn json(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The human plan.
pub fn text(p: &Plan) -> String {
    let mut o = String::new();
    let _ = write!(o, "plan: {} ({})", p.runbook, p.path);
    if let Some(rto) = &p.rto {
        let _ = write!(o, "  rto {rto}");
    }
    o.push('\n');
    let section = |o: &mut String, title: &str, items: Vec<(String, String)>| {
        if items.is_empty() {
            return;
        }
        let _ = writeln!(o, "{title}:");
        let w = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in items {
            let _ = writeln!(o, "  {k:<w$} = {v}");
        }
    };
    section(
        &mut o,
        "inputs",
        p.inputs.iter().map(|(k, v)| (k.clone(), json(v))).collect(),
    );
    section(
        &mut o,
        "vars",
        p.vars.iter().map(|(k, v)| (k.clone(), json(v))).collect(),
    );
    section(
        &mut o,
        "targets",
        p.targets
            .iter()
            .map(|(k, t)| (k.clone(), format!("{} {}", t.kind, t.url)))
            .collect(),
    );
    section(
        &mut o,
        "notify",
        p.notify
            .iter()
            .map(|(event, names)| (event.clone(), names.join(", ")))
            .collect(),
    );
    if !p.reachability.is_empty() {
        o.push_str("reachability:\n");
        let w = p
            .reachability
            .iter()
            .map(|r| r.target.len())
            .max()
            .unwrap_or(0);
        for r in &p.reachability {
            let word = match r.reachable {
                Some(true) => "reachable",
                Some(false) => "UNREACHABLE",
                None => "unknown",
            };
            let _ = writeln!(o, "  {:<w$} {word}: {}", r.target, r.detail);
        }
    }
    o.push('\n');
    let mut n = 0;
    for s in &p.steps {
        n += 1;
        step(&mut o, n, s);
    }
    if !p.finally.is_empty() {
        o.push_str("finally:\n");
        for s in &p.finally {
            n += 1;
            step(&mut o, n, s);
        }
    }
    if !p.warnings.is_empty() {
        o.push('\n');
        for w in &p.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
    }
    if !p.outputs.is_empty() {
        o.push('\n');
        section(
            &mut o,
            "outputs",
            p.outputs
                .iter()
                .map(|(k, v)| (k.clone(), json(v)))
                .collect(),
        );
    }
    o
}

fn step(o: &mut String, n: usize, s: &PlannedStep) {
    let _ = write!(o, "{n:>3}. {}  [group {}] {}", s.id, s.group, s.kind);
    if !s.needs.is_empty() {
        let _ = write!(o, "  needs: {}", s.needs.join(", "));
    }
    o.push('\n');
    let pad = "       ";
    if let Some(name) = &s.name {
        let _ = writeln!(o, "{pad}# {name}");
    }
    if let Some(w) = &s.when {
        let _ = write!(o, "{pad}when {} -> {}", w.expr, w.decision);
        if let Some(d) = &w.depends_on {
            let _ = write!(o, " (depends on <{d}>)");
        }
        o.push('\n');
    }
    let mut flags = Vec::new();
    if let Some(t) = &s.timeout {
        flags.push(format!("timeout {t}"));
    }
    if let Some(r) = &s.retry {
        flags.push(format!("retry {r}"));
    }
    if s.continue_on_failure {
        flags.push("on_failure continue".into());
    }
    if s.not_idempotent {
        flags.push("not idempotent".into());
    }
    if s.readonly {
        flags.push("readonly".into());
    }
    if s.keep_for_resume {
        flags.push("kept for a resume (runs when the run succeeds)".into());
    }
    if !flags.is_empty() {
        let _ = writeln!(o, "{pad}{}", flags.join(", "));
    }
    if let Some(fe) = &s.for_each {
        let _ = writeln!(o, "{pad}for_each {}", json(fe));
    }
    if let Some(pr) = &s.probe {
        let _ = write!(o, "{pad}probe: {} ({})", pr.outcome, pr.why);
        if let Some(ms) = pr.duration_ms {
            let _ = write!(o, " in {ms} ms");
        }
        o.push('\n');
        if let Some(e) = &pr.error {
            let _ = writeln!(o, "{pad}  error: {e}");
        }
        if let Some(out) = pr
            .outputs
            .as_ref()
            .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
        {
            let _ = writeln!(o, "{pad}  outputs: {}", json(out));
        }
    }
    let many = s.actions.len() > 1;
    for (i, a) in s.actions.iter().enumerate() {
        let pad = if many {
            format!("{pad}[{i}] ")
        } else {
            pad.to_string()
        };
        action(o, &pad, a);
    }
}

fn action(o: &mut String, pad: &str, a: &Prepared) {
    let cont = " ".repeat(pad.chars().count());
    let lines = |o: &mut String, first: &str, text: &str| {
        for (i, l) in text.lines().enumerate() {
            let _ = writeln!(
                o,
                "{}{}{l}",
                if i == 0 { pad } else { &cont },
                if i == 0 { first } else { "  " }
            );
        }
    };
    match a {
        Prepared::Shell {
            command,
            values,
            env,
            cwd,
            detach,
        } => {
            lines(o, "$ ", command);
            shell_values(o, &cont, values);
            env_cwd(o, &cont, env, cwd.as_deref());
            detached(o, &cont, *detach);
        }
        Prepared::Argv {
            argv,
            values,
            env,
            cwd,
            detach,
        } => {
            let _ = writeln!(o, "{pad}argv {}", json(&serde_json::json!(argv)));
            shell_values(o, &cont, values);
            env_cwd(o, &cont, env, cwd.as_deref());
            detached(o, &cont, *detach);
        }
        Prepared::Sql {
            target,
            url,
            sql,
            params,
            ..
        } => {
            let _ = writeln!(o, "{pad}on {target} ({url})");
            lines(o, "", sql.trim());
            for (i, v) in params.iter().enumerate() {
                let mark = if url.starts_with("postgres") {
                    format!("${}", i + 1)
                } else {
                    format!("?{}", i + 1)
                };
                let _ = writeln!(o, "{cont}  {mark} = {}", json(v));
            }
        }
        Prepared::Http {
            method,
            url,
            headers,
            json: body_json,
            body,
            auth,
            insecure,
            ..
        } => {
            let _ = writeln!(
                o,
                "{pad}{method} {url}{}",
                if *insecure { "  (insecure TLS)" } else { "" }
            );
            for (k, v) in headers {
                let _ = writeln!(o, "{cont}  {k}: {v}");
            }
            if let Some(a) = auth {
                let _ = writeln!(o, "{cont}  auth: {a}");
            }
            if let Some(j) = body_json {
                let _ = writeln!(o, "{cont}  json: {}", json(j));
            }
            if let Some(b) = body {
                lines(o, "  body: ", b);
            }
        }
        Prepared::Chroma {
            target,
            url,
            action,
            params,
        } => {
            let _ = writeln!(o, "{pad}chroma {action} on {target} ({url})");
            if !params.is_null() {
                let _ = writeln!(o, "{cont}  {}", json(params));
            }
        }
        Prepared::Check {
            value,
            warning,
            critical,
            unit,
            ..
        } => {
            let _ = write!(o, "{pad}value {}", json(value));
            if let Some(u) = unit {
                let _ = write!(o, " {u}");
            }
            if let Some(w) = warning {
                let _ = write!(o, "; warning {w}");
            }
            if let Some(c) = critical {
                let _ = write!(o, "; critical {c}");
            }
            o.push('\n');
        }
        Prepared::Approval {
            message,
            timeout,
            on_timeout,
            approvers,
            min_approvals,
            allow_self_approval,
            on_reject,
            notify,
        } => {
            lines(o, "? ", message);
            let who = if approvers.is_empty() {
                "anyone".to_string()
            } else {
                approvers.join(", ")
            };
            let count = if *min_approvals > 1 {
                format!("{min_approvals} distinct approvals from {who}")
            } else {
                format!("one approval from {who}")
            };
            let starter = if *allow_self_approval {
                "the starter too"
            } else {
                "not the starter"
            };
            let on_reject = match on_reject {
                cairn_model::OnReject::Fail => "a rejection fails the run",
                cairn_model::OnReject::Skip => "a rejection skips what needs it",
            };
            let _ = writeln!(o, "{cont}  needs {count} ({starter}); {on_reject}");
            if let Some(t) = timeout {
                let then = match on_timeout {
                    cairn_model::OnTimeout::Reject => "reject",
                    cairn_model::OnTimeout::Approve => "approve",
                };
                let _ = writeln!(o, "{cont}  timeout {}, then {then}", fmt_dur(*t));
            }
            if !notify.is_empty() {
                let _ = writeln!(o, "{cont}  notifies {}", notify.join(", "));
            }
        }
        Prepared::Sleep { duration } => {
            let _ = writeln!(o, "{pad}sleep {}", fmt_dur(*duration));
        }
        Prepared::Poll {
            action: inner,
            until,
            interval,
            timeout,
        } => {
            let _ = writeln!(
                o,
                "{pad}every {} until {} (give up after {}):",
                fmt_dur(*interval),
                until.src(),
                fmt_dur(*timeout)
            );
            action(o, &format!("{cont}  "), inner);
        }
        Prepared::Report { template, to, .. } => {
            let _ = writeln!(
                o,
                "{pad}render {} -> {to}",
                template.as_deref().unwrap_or("inline template")
            );
        }
        Prepared::Uses { runbook, with } => {
            let _ = writeln!(o, "{pad}run {runbook}");
            for (k, v) in with {
                let _ = writeln!(o, "{cont}  {k} = {}", json(v));
            }
        }
    }
}

/// The values a script's references read, beside it (as SQL's bound values are).
fn shell_values(o: &mut String, pad: &str, values: &indexmap::IndexMap<String, String>) {
    for (k, v) in values {
        let _ = writeln!(o, "{pad}  ${k} = {}", json(&serde_json::json!(v)));
    }
}

/// `detach: true`: what the command leaves running outlives the step and the run.
fn detached(o: &mut String, pad: &str, detach: bool) {
    if detach {
        let _ = writeln!(
            o,
            "{pad}  detach: what it leaves running is released when it exits 0"
        );
    }
}

fn env_cwd(o: &mut String, pad: &str, env: &indexmap::IndexMap<String, String>, cwd: Option<&str>) {
    for (k, v) in env {
        let _ = writeln!(o, "{pad}  env {k}={v}");
    }
    if let Some(c) = cwd {
        let _ = writeln!(o, "{pad}  cwd {c}");
    }
}
