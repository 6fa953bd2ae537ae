//! Rendering engine events: a live view of running steps on a TTY (indicatif), one plain line
//! per transition otherwise, or one JSON object per event (`--log-format json`, on stdout).
//! At the end: a summary table and the RTO verdict.

use cairn_engine::events::{Event, RunOutcome, Sink, Status, StepSummary};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub struct Progress {
    format: LogFormat,
    live: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    color: bool,
    /// The gate whose prompt is on the terminal: until it is answered no spinner draws, so
    /// nothing is drawn over the question or the answer being typed.
    prompting: Mutex<Option<String>>,
    /// Added to every JSON event that does not name a run (a worker's runs interleave).
    run_id: Option<String>,
}

impl Progress {
    /// Progress of one run among several on the same stdout (a worker's): every JSON event
    /// names the run as `run_id`.
    pub fn for_run(format: LogFormat, run_id: &str) -> Progress {
        Progress {
            run_id: Some(run_id.to_string()),
            ..Progress::new(format)
        }
    }

    pub fn new(format: LogFormat) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let live = (format == LogFormat::Text && tty).then(MultiProgress::new);
        Progress {
            format,
            live,
            bars: Mutex::new(HashMap::new()),
            color: crate::output::color_stderr(),
            prompting: Mutex::new(None),
            run_id: None,
        }
    }

    fn prompting(&self) -> bool {
        self.prompting.lock().map(|p| p.is_some()).unwrap_or(false)
    }

    /// The prompt of gate `step` opens (`Some`) or closes: spinners stop drawing while it is open.
    fn prompt(&self, step: Option<&str>) {
        let Some(mp) = &self.live else { return };
        if let Ok(mut p) = self.prompting.lock() {
            match (step, p.as_deref()) {
                (Some(s), _) => {
                    mp.set_draw_target(indicatif::ProgressDrawTarget::hidden());
                    *p = Some(s.to_string());
                }
                (None, Some(_)) => {
                    mp.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    *p = None;
                }
                (None, None) => {}
            }
        }
    }

    fn line(&self, text: &str) {
        match &self.live {
            Some(_) if self.prompting() => crate::output::eprint_line(text),
            Some(mp) => {
                let _ = mp.println(text);
            }
            None => crate::output::eprint_line(text),
        }
    }

    fn paint(&self, status: Status, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        use anstyle::{AnsiColor, Style};
        let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
        let style = match status {
            Status::Succeeded => fg(AnsiColor::Green),
            Status::Failed => cairn_model::diag::ERROR,
            Status::Skipped | Status::Pending => Style::new().dimmed(),
            Status::Waiting => fg(AnsiColor::Yellow),
            Status::Cancelled => fg(AnsiColor::Magenta),
            Status::Running => fg(AnsiColor::Cyan),
        };
        format!("{}{text}{}", style.render(), style.render_reset())
    }
}

fn key(step: &str, item: Option<usize>) -> String {
    match item {
        Some(i) => format!("{step}[{i}]"),
        None => step.to_string(),
    }
}

pub fn secs(d: Duration) -> String {
    if d.as_secs() >= 60 {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The summary's note for a step: its error, its check state, or why it was skipped; on one
/// line, cut at 60 characters.
fn summary_note(s: &StepSummary) -> String {
    let note = s
        .error
        .as_deref()
        .or(s.state.as_deref())
        .or(s.note.as_deref().filter(|_| s.status == Status::Skipped))
        .unwrap_or_default();
    let mut out: String = note
        .chars()
        .take(60)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if note.chars().nth(60).is_some() {
        out.push('…');
    }
    out
}

/// The cells of a step's summary row, in the order of [`SUMMARY_HEADER`].
fn summary_cells(s: &StepSummary) -> [std::borrow::Cow<'_, str>; 6] {
    [
        s.id.as_str().into(),
        s.kind.into(),
        s.status.as_str().into(),
        s.attempts.to_string().into(),
        secs(s.duration).into(),
        summary_note(s).into(),
    ]
}

const SUMMARY_HEADER: [&str; 6] = ["step", "kind", "status", "attempts", "duration", "note"];

/// The summary table, one step a row, written as it goes: a first pass measures the columns,
/// a second writes the rows. Built whole (as a table library does), it held every cell of a
/// 10,000-step run at once, 17 MB at the run's end (docs/performance.md).
fn write_summary(steps: &[StepSummary], out: &mut impl Write) -> std::io::Result<()> {
    use unicode_width::UnicodeWidthStr;
    let mut widths = SUMMARY_HEADER.map(UnicodeWidthStr::width);
    for s in steps {
        for (w, cell) in widths.iter_mut().zip(summary_cells(s)) {
            *w = (*w).max(cell.width());
        }
    }
    // Each cell has a space either side; columns are one space apart.
    let inner = widths.iter().map(|w| w + 2).sum::<usize>() + widths.len() - 1;
    let rule = |out: &mut dyn Write, left: &str, fill: &str, right: &str| {
        writeln!(out, "{left}{}{right}", fill.repeat(inner))
    };
    let row = |out: &mut dyn Write, cells: &[&str]| -> std::io::Result<()> {
        out.write_all("│".as_bytes())?;
        for (k, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.width();
            write!(out, "{} {cell}{:pad$} ", if k == 0 { "" } else { " " }, "")?;
        }
        out.write_all("│\n".as_bytes())
    };
    rule(out, "┌", "─", "┐")?;
    row(out, &SUMMARY_HEADER)?;
    rule(out, "╞", "═", "╡")?;
    for s in steps {
        let cells = summary_cells(s);
        let cells: Vec<&str> = cells.iter().map(AsRef::as_ref).collect();
        row(out, &cells)?;
    }
    rule(out, "└", "─", "┘")
}

/// The event with every text that came from a step, a value or a file escaped for the terminal.
fn terminal_safe(event: &Event) -> Event {
    use crate::output::escape_controls as esc;
    let opt = |s: &mut Option<String>| {
        if let Some(t) = s {
            *t = esc(t);
        }
    };
    let mut e = event.clone();
    match &mut e {
        Event::RunStarted { runbook, .. } => *runbook = esc(runbook),
        Event::StepStarted { what, .. } => *what = esc(what),
        Event::StepRetrying { error, .. } => *error = esc(error),
        Event::StepFinished { error, note, .. } => {
            opt(error);
            opt(note);
        }
        Event::ApprovalWaiting { message, rules, .. } => {
            *message = esc(message);
            *rules = esc(rules);
        }
        Event::ApprovalNote { text, .. } => *text = esc(text),
        Event::ApprovalAnswered { by, .. } => *by = esc(by),
        Event::RunFinished { steps, .. } => {
            for s in steps {
                opt(&mut s.error);
                opt(&mut s.note);
                opt(&mut s.state);
            }
        }
    }
    e
}

impl Sink for Progress {
    fn emit(&self, event: &Event) {
        if self.format == LogFormat::Json {
            // Serialized whole first: written into the line-buffered stdout piece by piece, an
            // event holding a step's 1 MB output took a system call per kilobyte.
            let named = self.run_id.as_ref().and_then(|id| {
                let mut v = serde_json::to_value(event).ok()?;
                let o = v.as_object_mut()?;
                o.entry("run_id").or_insert_with(|| id.clone().into());
                Some(v)
            });
            let line = match named {
                Some(v) => serde_json::to_vec(&v),
                None => serde_json::to_vec(event),
            };
            if let Ok(mut line) = line {
                line.push(b'\n');
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&line);
                let _ = out.flush();
            }
            return;
        }
        let event = &terminal_safe(event);
        match event {
            Event::RunStarted { runbook, steps, .. } => {
                self.line(&format!("running {runbook}: {steps} steps"))
            }
            Event::StepStarted {
                step,
                item,
                attempt,
                what,
            } => {
                let k = key(step, *item);
                let retry = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                match &self.live {
                    Some(mp) => {
                        let bar = mp.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.set_message(format!("{k}{retry}  {what}"));
                        bar.enable_steady_tick(Duration::from_millis(120));
                        if let Ok(mut bars) = self.bars.lock() {
                            bars.insert(k, bar);
                        }
                    }
                    None => self.line(&format!(
                        "{} {k}{retry}  {what}",
                        self.paint(Status::Running, "▶")
                    )),
                }
            }
            Event::StepRetrying {
                step,
                item,
                attempt,
                delay,
                error,
            } => {
                self.line(&format!(
                    "↻ {} attempt {attempt} failed: {error}; retrying in {}",
                    key(step, *item),
                    secs(*delay)
                ));
            }
            Event::StepFinished {
                step,
                item,
                status,
                attempts,
                duration,
                error,
                note,
            } => {
                let k = key(step, *item);
                if self
                    .prompting
                    .lock()
                    .is_ok_and(|p| p.as_deref() == Some(k.as_str()))
                {
                    self.prompt(None);
                }
                if let Ok(mut bars) = self.bars.lock()
                    && let Some(bar) = bars.remove(&k)
                {
                    bar.finish_and_clear();
                }
                let mark = match status {
                    Status::Succeeded => "✓",
                    Status::Failed => "✗",
                    Status::Skipped => "–",
                    Status::Waiting => "⏸",
                    Status::Cancelled => "■",
                    _ => "·",
                };
                let mut text = format!(
                    "{} {k} {} in {}",
                    self.paint(*status, mark),
                    status.as_str(),
                    secs(*duration)
                );
                if *attempts > 1 {
                    text.push_str(&format!(" after {attempts} attempts"));
                }
                if let Some(n) = note.as_ref().filter(|n| !n.is_empty()) {
                    text.push_str(&format!(" ({n})"));
                }
                if let Some(e) = error {
                    text.push_str(&format!("\n    {e}"));
                }
                self.line(&text);
            }
            Event::ApprovalWaiting {
                step,
                message,
                run_id,
                rules,
                prompt,
            } => {
                // A gate inside a sub-run is answered in the sub-run: `cairn show` names it.
                let gate = step.rsplit('/').next().unwrap_or(step);
                self.line(&format!("⏸ approval `{step}`: {message}"));
                if !rules.is_empty() {
                    self.line(&format!("  needs {rules}"));
                }
                if *prompt {
                    self.line(&format!(
                        "  answer here, or from any shell: cairn approve {run_id} {gate}  (or cairn reject)"
                    ));
                    if let Ok(mut bars) = self.bars.lock()
                        && let Some(bar) = bars.remove(step.as_str())
                    {
                        bar.finish_and_clear();
                    }
                    self.prompt(Some(step));
                    crate::output::eprint_line("  approve? [y/n] ");
                } else {
                    self.line(&format!(
                        "  answer with: cairn approve {run_id} {gate}  (or cairn reject), then cairn resume"
                    ));
                }
            }
            Event::ApprovalAnswered { step, approved, by } => {
                let verdict = if *approved { "approved" } else { "rejected" };
                self.line(&format!("  `{step}` {verdict} by {by}"));
            }
            Event::ApprovalNote { step, text } => {
                self.line(&format!("  `{step}`: {text}"));
            }
            Event::RunFinished {
                run_id,
                outcome,
                duration,
                steps,
                rto,
                warnings,
                ..
            } => {
                if let Some(mp) = &self.live {
                    let _ = mp.clear();
                }
                let mut err = std::io::BufWriter::new(std::io::stderr().lock());
                let _ = write_summary(steps, &mut err).and_then(|()| err.flush());
                drop(err);
                if let Some(r) = rto {
                    let verdict = if r.met { "within" } else { "OVER" };
                    eprintln!(
                        "RTO {}: elapsed {} ({verdict} objective)",
                        humantime::format_duration(r.rto),
                        secs(r.elapsed)
                    );
                }
                let status = match outcome {
                    RunOutcome::Succeeded => Status::Succeeded,
                    // Yellow, like a step waiting: done, but someone should look.
                    RunOutcome::SucceededWithWarnings => Status::Waiting,
                    RunOutcome::Failed => Status::Failed,
                    RunOutcome::Paused => Status::Waiting,
                    RunOutcome::Interrupted => Status::Cancelled,
                };
                let mut end = format!(
                    "run {run_id} {} in {}",
                    outcome.as_str().replace('_', " "),
                    secs(*duration)
                );
                match outcome {
                    RunOutcome::SucceededWithWarnings => {
                        let list: Vec<String> = warnings.iter().map(ToString::to_string).collect();
                        end.push_str(&format!(": {}", list.join(", ")));
                    }
                    RunOutcome::Paused => end.push_str(&format!(
                        "; approve with `cairn approve {run_id} STEP`, then `cairn resume {run_id}`"
                    )),
                    RunOutcome::Failed
                        if let Some(gate) = steps
                            .iter()
                            .find(|s| s.kind == "approval" && s.status == Status::Failed) =>
                    {
                        end.push_str(&format!(
                            ": `{}` was {}; a \"no\" is final (to ask again: `cairn resume {run_id} --rerun {}`)",
                            gate.id,
                            gate.error.as_deref().unwrap_or("rejected"),
                            gate.id
                        ))
                    }
                    RunOutcome::Failed | RunOutcome::Interrupted => {
                        end.push_str(&format!("; fix and continue with `cairn resume {run_id}`"))
                    }
                    RunOutcome::Succeeded => {}
                }
                crate::output::eprint_line(&self.paint(status, &end));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, status: Status, error: Option<&str>) -> StepSummary {
        StepSummary {
            id: id.into(),
            kind: "shell",
            status,
            attempts: 1,
            duration: Duration::from_millis(1500),
            error: error.map(str::to_string),
            state: None,
            note: None,
        }
    }

    #[test]
    fn the_summary_aligns_wide_characters_and_keeps_each_step_on_one_line() {
        let long = format!("exit code 1: ✗ {}\nsecond line", "x".repeat(80));
        let steps = [
            step("restore", Status::Failed, Some(&long)),
            step("vérifier", Status::Succeeded, Some("données ok\r\tfin")),
        ];
        let mut out = Vec::new();
        write_summary(&steps, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        let width = |l: &str| unicode_width::UnicodeWidthStr::width(l);
        assert!(lines.iter().all(|l| width(l) == width(lines[0])), "{text}");
        assert_eq!(
            lines[3],
            format!(
                "│ restore    shell   failed      1          1.5s       exit code 1: ✗ {}… │",
                "x".repeat(45)
            )
        );
        assert!(lines[4].contains("données ok  fin"), "{text}");
        assert!(lines[0].starts_with('┌') && lines[2].starts_with('╞'));
        assert!(lines[5].starts_with('└') && lines[5].ends_with('┘'));
    }
}
