//! A Markdown report of a run, for people: the summary, the RTO/RPO verdict, the DAG as a
//! Mermaid graph coloured by status, and every step with its timings, outputs and error.

use super::data::{RunData, step_secs};
use std::fmt::Write as _;

/// The report's RTO and RPO lines (Markdown), from what the runbook declares: the console's
/// run page shows these same lines.
pub fn objectives(
    r: &cairn_state::RunRecord,
    rto: Option<std::time::Duration>,
    rpo: Option<std::time::Duration>,
) -> [String; 2] {
    let rto = match rto {
        Some(rto) => {
            let rto = rto.as_secs_f64();
            let elapsed = super::data::run_secs(r);
            let verdict = match (r.finished_at.is_some(), elapsed <= rto) {
                (true, true) => "**met**",
                (true, false) => "**missed**",
                (false, true) => "not decided yet (the run has not ended)",
                (false, false) => "**missed** (the run has not ended)",
            };
            format!("RTO {}: {verdict}, {} elapsed", secs(rto), secs(elapsed))
        }
        None => "RTO: none declared".to_string(),
    };
    let rpo = match rpo {
        Some(rpo) => format!(
            "RPO {}: declared; Cairn does not measure data loss, check the runbook's own verification steps",
            secs(rpo.as_secs_f64())
        ),
        None => "RPO: none declared".to_string(),
    };
    [rto, rpo]
}

pub fn render(d: &RunData) -> String {
    let r = &d.run;
    let mut o = String::new();
    let outcome = d.outcome().replace('_', " ");
    let _ = writeln!(o, "# {}: {outcome}\n", cell(&r.runbook));
    let _ = writeln!(o, "| | |\n|---|---|");
    let rows = [
        ("run", format!("`{}`", r.id)),
        (
            "runbook",
            format!("{} (`{}`)", cell(&r.runbook), cell(&r.path)),
        ),
        ("status", outcome.clone()),
        (
            "started",
            r.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ),
        (
            "ended",
            r.finished_at.map_or_else(
                || "not ended".to_string(),
                |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ),
        ),
        ("duration", secs(d.duration_secs())),
        ("attempt", r.attempt.to_string()),
        ("by", format!("{}@{}", cell(&r.user), cell(&r.host))),
    ];
    for (k, v) in rows {
        let _ = writeln!(o, "| {k} | {v} |");
    }
    if let Some(e) = &r.error {
        let _ = writeln!(o, "| error | {} |", cell(e));
    }
    let warnings: Vec<String> = d.warnings().iter().map(|w| cell(&w.to_string())).collect();
    if !warnings.is_empty() {
        let _ = writeln!(o, "| warnings | {} |", warnings.join(", "));
    }
    o.push('\n');

    // RTO/RPO.
    let _ = writeln!(o, "## Objectives\n");
    let rb = d.runbook.as_ref().map(|c| &c.runbook);
    for line in objectives(
        r,
        rb.and_then(|rb| rb.rto.as_ref()).map(|v| v.value.0),
        rb.and_then(|rb| rb.rpo.as_ref()).map(|v| v.value.0),
    ) {
        let _ = writeln!(o, "- {line}");
    }
    o.push('\n');

    if let Some(c) = &d.runbook {
        let statuses = crate::graph::statuses_of(d);
        let _ = writeln!(
            o,
            "## Graph\n\n```mermaid\n{}```\n",
            crate::graph::mermaid(c, Some(&statuses))
        );
    }

    let _ = writeln!(o, "## Steps\n");
    let _ = writeln!(
        o,
        "| step | kind | status | attempts | started | duration |\n|---|---|---|---|---|---|"
    );
    let steps = d.whole_steps();
    for s in &steps {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            cell(&s.step_id),
            d.kind(&s.step_id),
            d.shown_status(s),
            s.attempt,
            s.started_at
                .map(|t| t.format("%H:%M:%S").to_string())
                .unwrap_or_default(),
            if s.started_at.is_some() {
                secs(step_secs(s))
            } else {
                String::new()
            }
        );
    }
    o.push('\n');
    for s in &steps {
        let _ = writeln!(o, "### {}\n", cell(&s.step_id));
        let _ = writeln!(
            o,
            "{} {}, attempt {}{}\n",
            d.kind(&s.step_id),
            d.shown_status(s),
            s.attempt,
            if s.started_at.is_some() {
                format!(", {}", secs(step_secs(s)))
            } else {
                String::new()
            }
        );
        if let Some(e) = &s.error {
            let label = if s.status == cairn_state::StepStatus::Failed {
                "Error"
            } else {
                "Note"
            };
            let _ = writeln!(o, "{label}:\n\n{}", fenced("text", e));
        }
        // What a command left running: a warning when it was stopped with the step.
        if matches!(d.kind(&s.step_id), "shell" | "argv")
            && let Some(left) = s
                .result
                .as_ref()
                .and_then(cairn_steps::shell::leftovers_note)
        {
            let label = if left.starts_with("stopped") {
                "Warning"
            } else {
                "Processes"
            };
            let _ = writeln!(o, "{label}: {}\n", cell(&left));
        }
        if let Some(out) = s
            .outputs
            .as_ref()
            .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
        {
            let pretty = serde_json::to_string_pretty(out).unwrap_or_default();
            let _ = writeln!(o, "Outputs:\n\n{}", fenced("json", &pretty));
        }
        let items = d.items_of(&s.step_id);
        if !items.is_empty() {
            let _ = writeln!(o, "| item | status | duration | error |\n|---|---|---|---|");
            for it in items {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    it.item.unwrap_or_default(),
                    d.shown_status(it),
                    secs(step_secs(it)),
                    cell(it.error.as_deref().unwrap_or(""))
                );
            }
            o.push('\n');
        }
    }
    if !d.approvals.is_empty() {
        let _ = writeln!(o, "## Approvals\n");
        for a in &d.approvals {
            let _ = writeln!(o, "- {}", cell(&super::data::answer_line(a)));
        }
        o.push('\n');
    }
    o
}

fn secs(s: f64) -> String {
    crate::progress::secs(std::time::Duration::from_secs_f64(s.max(0.0)))
}

/// Text for one table cell or line: no line breaks, `|` and Markdown/HTML specials escaped.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `text` in a fenced code block whose fence is longer than any run of backticks inside it.
fn fenced(lang: &str, text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{lang}\n{}\n{fence}\n", text.trim_end_matches('\n'))
}
