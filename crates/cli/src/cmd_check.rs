//! `cairn check FILE`: run a health-check runbook and answer as a monitoring plugin, by the
//! Nagios plugin guidelines (which Icinga, Naemon, Sensu and Zabbix follow too): one status line
//! `CAIRN <STATE> - <summary> | <perfdata>`, detail lines after it, exit 0/1/2/3.

use crate::inputs::InputArgs;
use crate::report::{CheckResult, RunData};
use cairn_engine::run::{ErrorKind, execute};
use cairn_model::{CmpOp, Threshold};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The health-check runbook
    file: PathBuf,
    #[command(flatten)]
    inputs: InputArgs,
    /// Give up after this long and answer UNKNOWN (running steps are cancelled)
    #[arg(short = 't', long, value_name = "DURATION", default_value = "50s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Keep the run in this state store (default: nothing is kept)
    #[arg(long, value_name = "URL")]
    state: Option<String>,
    #[command(flatten)]
    reports: crate::report::ReportArgs,
}

/// The plugin states, in the guidelines' order of codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }

    /// Worse of two, where UNKNOWN ranks below CRITICAL (a broken check does not hide an
    /// outage another check proved).
    fn worse(self, other: State) -> State {
        let rank = |s: State| match s {
            State::Ok => 0,
            State::Warning => 1,
            State::Unknown => 2,
            State::Critical => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// Prints the plugin answer and gives its exit code.
fn answer(state: State, summary: &str, perfdata: &str, details: &[String]) -> u8 {
    let mut out = format!("CAIRN {} - {}", state.name(), plain(summary));
    if !perfdata.is_empty() {
        let _ = write!(out, " | {perfdata}");
    }
    out.push('\n');
    for d in details {
        out.push_str(&plain(d));
        out.push('\n');
    }
    // A monitoring host reads stdout only; a closed pipe changes nothing in the answer.
    let _ = crate::output::print(&out);
    state as u8
}

/// Text for the plugin output: one line, without the `|` that starts perfdata.
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '|' => '/',
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

pub fn run(args: Args) -> u8 {
    match check(args) {
        Ok(code) => code,
        Err(e) => answer(State::Unknown, &format!("{e:#}"), "", &[]),
    }
}

fn check(args: Args) -> anyhow::Result<u8> {
    let templates = Arc::new(cairn_template::Templates::new());
    let checked = match cairn_model::load(&args.file, &templates) {
        Ok((c, _)) => Arc::new(c),
        Err(cairn_model::LoadError::Invalid {
            path,
            text,
            diagnostics,
        }) => {
            let details: Vec<String> = diagnostics
                .errors()
                .map(|d| {
                    let rendered = d.render(&path, &text, false);
                    rendered.lines().next().unwrap_or_default().to_string()
                })
                .collect();
            return Ok(answer(
                State::Unknown,
                &format!("{path} is not a valid runbook ({} errors)", details.len()),
                "",
                &details,
            ));
        }
        Err(e) => anyhow::bail!("{e}"),
    };
    let inv = args.inputs.invocation(&checked.runbook)?;
    // No state unless asked: an in-memory store, and step logs in a temp dir removed after.
    let url = args.state.clone().unwrap_or_else(|| "memory:".to_string());
    let logs = tempfile::Builder::new().prefix("cairn-check-").tempdir()?;
    let limit = args.timeout;
    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let store = cairn_state::open(&url).await?;
        let mut opts = crate::run_options::run_options(8, false, &url);
        opts.interactive = false;
        if args.state.is_none() {
            opts.logs = logs.path().to_path_buf();
        }
        let cancel = opts.cancel.clone();
        let sink: Arc<dyn cairn_engine::events::Sink> = Arc::new(Quiet);
        let run = execute(checked, templates, &inv, store.clone(), sink, opts);
        tokio::pin!(run);
        // At the limit the run is cancelled (its `finally` runs); if it has not ended a little
        // later, the answer is given anyway: a plugin must answer within its time.
        let grace = (limit / 10).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let outcome = tokio::select! {
            r = &mut run => Some(r),
            () = tokio::time::sleep(limit) => {
                cancel.cancel();
                let _ = tokio::time::timeout(grace, &mut run).await;
                None
            }
        };
        let Some(result) = outcome else {
            return Ok(answer(
                State::Unknown,
                &format!("no answer within {}", humantime::format_duration(limit)),
                "",
                &[],
            ));
        };
        let report = match result {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::Infrastructure => return Err(e.into()),
            Err(e) => {
                return Ok(answer(State::Unknown, &format!("cannot run: {e}"), "", &[]));
            }
        };
        let data = store.get_run(&report.run_id).await?;
        let data = match data {
            Some(run) => RunData::load(&store, run).await?,
            None => anyhow::bail!("the run {} was not recorded", report.run_id),
        };
        let written = crate::report::write_all(&data, &args.reports);
        store.close().await;
        written?;
        Ok(verdict(&data, report.outcome))
    })
}

/// No progress: a monitoring host reads the plugin's stdout only.
struct Quiet;

impl cairn_engine::events::Sink for Quiet {
    fn emit(&self, _: &cairn_engine::events::Event) {}
}

fn verdict(d: &RunData, outcome: cairn_engine::events::RunOutcome) -> u8 {
    use cairn_engine::events::RunOutcome;
    let checks = d.checks();
    let mut state = State::Ok;
    let mut problems = Vec::new();
    let mut details = Vec::new();
    for c in &checks {
        let s = match c.code() {
            0 => State::Ok,
            1 => State::Warning,
            2 => State::Critical,
            _ => State::Unknown,
        };
        state = state.worse(s);
        let shown = format!(
            "{}: {} {}{}",
            c.id,
            c.state,
            c.value.map_or("no value".to_string(), number),
            c.unit
                .as_deref()
                .map(|u| format!(" {u}"))
                .unwrap_or_default()
        );
        if s != State::Ok {
            problems.push(shown.clone());
        }
        details.push(shown);
    }
    // Steps that are not checks: a failure means what was checked is broken (a connection
    // refused, a query failing), which is CRITICAL.
    for s in d.whole_steps() {
        if d.kind(&s.step_id) == "check" {
            continue;
        }
        if s.status == cairn_state::StepStatus::Failed {
            state = state.worse(State::Critical);
            let e = format!(
                "{} failed: {}",
                s.step_id,
                s.error.as_deref().unwrap_or("failed")
            );
            problems.push(e.clone());
            details.push(e);
        }
    }
    match outcome {
        RunOutcome::Paused => {
            state = state.worse(State::Unknown);
            problems.push("paused at an approval: a check cannot wait for a person".into());
        }
        RunOutcome::Interrupted => {
            state = state.worse(State::Unknown);
            problems.push("interrupted".into());
        }
        RunOutcome::Succeeded | RunOutcome::SucceededWithWarnings | RunOutcome::Failed => {}
    }
    let summary = if problems.is_empty() {
        match checks.len() {
            0 => format!("{}: every step succeeded", d.run.runbook),
            1 => format!("{}: 1 check ok", d.run.runbook),
            n => format!("{}: {n} checks ok", d.run.runbook),
        }
    } else {
        format!("{}: {}", d.run.runbook, problems.join(", "))
    };
    let perfdata: Vec<String> = checks.iter().map(perf).collect();
    answer(state, &summary, &perfdata.join(" "), &details)
}

/// The units of measure the guidelines define.
const UOMS: &[&str] = &["s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"];

/// `'label'=value[UOM];warn;crit;min;max` for one check, thresholds in the guidelines' range
/// syntax, trailing empty fields left out.
pub fn perf(c: &CheckResult) -> String {
    let label = c.id.replace('\'', "''");
    let value = c.value.map_or_else(|| "U".to_string(), number);
    let uom = c
        .unit
        .as_deref()
        .filter(|u| UOMS.contains(u))
        .unwrap_or_default();
    let uom = if c.value.is_some() { uom } else { "" };
    let mut fields = vec![
        format!("'{label}'={value}{uom}"),
        c.warning.as_ref().map(range).unwrap_or_default(),
        c.critical.as_ref().map(range).unwrap_or_default(),
    ];
    while fields.len() > 1 && fields.last().is_some_and(String::is_empty) {
        fields.pop();
    }
    fields.join(";")
}

/// A threshold as a range of the guidelines: the range is what does NOT alert, unless it starts
/// with `@` (then it is what alerts); ends are inclusive.
pub fn range(t: &Threshold) -> String {
    let v = number(t.value);
    match t.op {
        // alert if x > v: fine in [-inf, v]
        CmpOp::Gt => format!("~:{v}"),
        // alert if x >= v: alert in [v, inf]
        CmpOp::Ge => format!("@{v}:"),
        // alert if x < v: fine in [v, inf]
        CmpOp::Lt => format!("{v}:"),
        // alert if x <= v: alert in [-inf, v]
        CmpOp::Le => format!("@~:{v}"),
        // alert if x == v: alert in [v, v]
        CmpOp::Eq => format!("@{v}:{v}"),
        // alert if x != v: fine in [v, v]
        CmpOp::Ne => format!("{v}:{v}"),
    }
}

/// A number as the guidelines write it: digits, `-` and `.`, no exponent.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A range of the plugin guidelines, parsed and evaluated as the guidelines define it:
    /// `[@][start:][end]`, `~` for negative infinity, ends inclusive; without `@` it alerts
    /// outside the range, with `@` inside.
    fn alerts(range: &str, x: f64) -> bool {
        let (inside, r) = match range.strip_prefix('@') {
            Some(r) => (true, r),
            None => (false, range),
        };
        let (start, end) = match r.split_once(':') {
            Some((s, e)) => (s, e),
            None => ("0", r),
        };
        let start = match start {
            "~" => f64::NEG_INFINITY,
            "" => 0.0,
            s => s.parse().expect("start"),
        };
        let end = match end {
            "" => f64::INFINITY,
            e => e.parse().expect("end"),
        };
        let within = start <= x && x <= end;
        if inside { within } else { !within }
    }

    #[test]
    fn every_threshold_becomes_a_range_that_alerts_exactly_when_it_is_crossed() {
        for text in [
            "> 80", ">= 80", "< 0.9", "<= 0.9", "== 0", "!= 0", "> -5", "< -2.5", "80",
        ] {
            let t = Threshold::parse(text).expect(text);
            let r = range(&t);
            for x in [
                -1e9, -5.0, -2.5, -1.0, 0.0, 0.5, 0.9, 0.95, 79.0, 79.999, 80.0, 80.001, 81.0, 1e9,
            ] {
                assert_eq!(
                    alerts(&r, x),
                    t.crossed(x),
                    "threshold {text} as range {r} at {x}"
                );
            }
        }
    }

    #[test]
    fn perfdata_items_follow_the_grammar() {
        let check = |id: &str, value: Option<f64>, unit: Option<&str>| CheckResult {
            id: id.into(),
            value,
            state: "ok".into(),
            warning: Threshold::parse("> 80"),
            critical: Threshold::parse(">= 95"),
            unit: unit.map(str::to_string),
        };
        assert_eq!(
            perf(&check("pool", Some(42.0), Some("conn"))),
            "'pool'=42;~:80;@95:"
        );
        assert_eq!(
            perf(&check("lag", Some(1.25), Some("s"))),
            "'lag'=1.25s;~:80;@95:"
        );
        assert_eq!(perf(&check("it's", None, Some("s"))), "'it''s'=U;~:80;@95:");
        let mut bare = check("n", Some(1e20), None);
        bare.warning = None;
        bare.critical = None;
        assert_eq!(perf(&bare), "'n'=100000000000000000000");
    }

    #[test]
    fn output_text_cannot_break_the_status_line() {
        assert_eq!(plain("a | b\nc\u{1}"), "a / b c?");
    }
}
