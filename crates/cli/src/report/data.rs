//! What the reports are made from: everything recorded about one run ([`RunData`]), and the
//! shared pieces of their formats.

use anyhow::Context as _;
use cairn_state::{Approval, RunRecord, StepRecord, StepStatus, Store};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `--junit`, `--report`, `--metrics-file`: shared by `run`, `resume`, `show` and `check`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ReportArgs {
    /// Write a JUnit XML report (one testcase per step and per for_each item)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a Markdown report (summary, RTO/RPO, a Mermaid graph, every step)
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write Prometheus metrics for node_exporter's textfile collector (atomically)
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

impl ReportArgs {
    pub fn any(&self) -> bool {
        self.junit.is_some() || self.report.is_some() || self.metrics_file.is_some()
    }
}

/// Everything recorded about one run, and the runbook it ran (when it can still be read).
pub struct RunData {
    pub run: RunRecord,
    pub steps: Vec<StepRecord>,
    pub approvals: Vec<Approval>,
    pub runbook: Option<cairn_model::Checked>,
}

impl RunData {
    pub async fn load(store: &Arc<dyn Store>, run: RunRecord) -> anyhow::Result<RunData> {
        let steps = store.steps(&run.id).await?;
        let approvals = store.approvals(&run.id).await?;
        let templates = cairn_template::Templates::new();
        // The runbook as it is now: used for kinds, the DAG and thresholds, never for results.
        let runbook = cairn_model::load(Path::new(&run.path), &templates)
            .ok()
            .map(|(c, _)| c);
        Ok(RunData {
            run,
            steps,
            approvals,
            runbook,
        })
    }

    /// The records of whole steps (not items), in the order they were written in the runbook
    /// when it is known, else as recorded.
    pub fn whole_steps(&self) -> Vec<&StepRecord> {
        let mut out: Vec<&StepRecord> = self.steps.iter().filter(|s| s.item.is_none()).collect();
        if let Some(c) = &self.runbook {
            let pos = |id: &str| {
                let main = c.runbook.steps.iter().position(|s| s.id.value == id);
                let fin = c.runbook.finally.iter().position(|s| s.id.value == id);
                main.or(fin.map(|f| c.runbook.steps.len() + f))
                    .unwrap_or(usize::MAX)
            };
            out.sort_by_key(|s| pos(&s.step_id));
        }
        out
    }

    pub fn items_of(&self, step: &str) -> Vec<&StepRecord> {
        let mut items: Vec<&StepRecord> = self
            .steps
            .iter()
            .filter(|s| s.step_id == step && s.item.is_some())
            .collect();
        items.sort_by_key(|s| s.item);
        items
    }

    pub fn kind(&self, step: &str) -> &'static str {
        self.step_def(step).map_or("step", |s| s.kind.name())
    }

    pub fn step_def(&self, step: &str) -> Option<&cairn_model::Step> {
        let rb = &self.runbook.as_ref()?.runbook;
        rb.steps
            .iter()
            .chain(rb.finally.iter())
            .find(|s| s.id.value == step)
    }

    /// The status a report shows: a step recorded running in a run that is no longer running
    /// was cut off mid-action.
    pub fn shown_status(&self, s: &StepRecord) -> &'static str {
        if s.status == StepStatus::Running && self.run.status != cairn_state::RunStatus::Running {
            "in doubt"
        } else {
            status_str(s.status)
        }
    }

    pub fn duration_secs(&self) -> f64 {
        run_secs(&self.run)
    }

    /// The checks that were not `ok`, when the run succeeded: it then "succeeded with warnings".
    pub fn warnings(&self) -> Vec<cairn_engine::warnings::CheckWarning> {
        if self.run.status != cairn_state::RunStatus::Succeeded {
            return Vec::new();
        }
        let steps: Vec<StepRecord> = self.steps.clone();
        cairn_engine::warnings::check_warnings(&steps, |id| {
            self.step_def(id).map(|s| s.kind.name())
        })
    }

    /// `succeeded_with_warnings` for a run that succeeded with warnings, else its status.
    pub fn outcome(&self) -> String {
        cairn_engine::events::outcome_word(self.run.status, &self.warnings())
    }

    /// `check` steps as recorded; a `for_each` check as one result per item (`id[k]`), so
    /// that each item is judged and shown on its own and the worst of them counts.
    pub fn checks(&self) -> Vec<CheckResult> {
        let mut out = Vec::new();
        for s in self.whole_steps() {
            if self.kind(&s.step_id) != "check" {
                continue;
            }
            let def = self.step_def(&s.step_id);
            let items = self.items_of(&s.step_id);
            if items.is_empty() {
                out.push(CheckResult::of(s, def));
            }
            for item in items {
                let mut c = CheckResult::of(item, def);
                c.id = format!("{}[{}]", s.step_id, item.item.unwrap_or_default());
                out.push(c);
            }
        }
        out
    }
}

/// A run's duration: to its end, or to its last heartbeat while it has not ended.
pub fn run_secs(run: &RunRecord) -> f64 {
    let end = run.finished_at.unwrap_or(run.heartbeat_at);
    (end - run.started_at)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64()
}

pub fn step_secs(s: &StepRecord) -> f64 {
    match (s.started_at, s.finished_at) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default().as_secs_f64(),
        _ => 0.0,
    }
}

pub fn status_str(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
        StepStatus::Waiting => "waiting",
        StepStatus::Cancelled => "cancelled",
    }
}

/// A `check` step's verdict as recorded.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub id: String,
    pub value: Option<f64>,
    /// ok, warning, critical or unknown (also when the check did not run).
    pub state: String,
    pub warning: Option<cairn_model::Threshold>,
    pub critical: Option<cairn_model::Threshold>,
    pub unit: Option<String>,
}

impl CheckResult {
    /// From the recorded result; thresholds and unit from the definition when it did not run.
    fn of(s: &StepRecord, def: Option<&cairn_model::Step>) -> CheckResult {
        let r = s.result.as_ref();
        let field = |k: &str| r.and_then(|r| r.get(k));
        let def = def.and_then(|d| match &d.kind {
            cairn_model::StepKind::Check(c) => Some(c),
            _ => None,
        });
        let threshold = |k: &str| {
            field(k)
                .and_then(|v| v.as_str())
                .and_then(cairn_model::Threshold::parse)
                .or_else(|| {
                    let t = if k == "warning" {
                        def.and_then(|c| c.warning.as_ref())
                    } else {
                        def.and_then(|c| c.critical.as_ref())
                    };
                    t.and_then(cairn_model::Limit::fixed)
                })
        };
        let state = match (s.status, field("state").and_then(|v| v.as_str())) {
            (StepStatus::Succeeded | StepStatus::Failed, Some(st)) => st.to_string(),
            _ => "unknown".to_string(),
        };
        CheckResult {
            id: s.step_id.clone(),
            value: field("value")
                .and_then(|v| v.as_f64())
                .filter(|v| v.is_finite()),
            state,
            warning: threshold("warning"),
            critical: threshold("critical"),
            unit: field("unit")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .or_else(|| def.and_then(|c| c.unit.clone())),
        }
    }

    /// The Nagios state code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn code(&self) -> u8 {
        match self.state.as_str() {
            "ok" => 0,
            "warning" => 1,
            "critical" => 2,
            _ => 3,
        }
    }
}

/// Writes `bytes` to `path` atomically: a temp file beside it, flushed and synced, then renamed
/// over it, so a reader (node_exporter, a CI upload) never sees half a file. Refuses to write
/// over something that is not a regular file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_file()
    {
        anyhow::bail!("{}: exists and is not a regular file", path.display());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // Readable by the collector (tempfile creates 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Writes every report asked for.
/// The last `max` bytes of a step's captured log (the engine writes logs already masked).
pub fn log_tail(s: &StepRecord, max: usize) -> Option<String> {
    let path = s.log_path.as_ref()?;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let start = bytes.len().saturating_sub(max);
    let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
    Some(if start > 0 {
        format!("[... {start} bytes before]\n{text}")
    } else {
        text
    })
}

/// One answer to a gate in one line, for the reports: who, where, when and why.
pub fn answer_line(a: &Approval) -> String {
    let mut place = a.host.clone().unwrap_or_default();
    if let Some(tty) = &a.tty {
        place = format!("{place} {tty}").trim().to_string();
    }
    let mut line = format!("{} {} by {}", a.step_id, a.decision, a.by);
    if !place.is_empty() {
        line.push_str(&format!(" on {place}"));
    }
    line.push_str(&format!(" at {}", a.at.format("%Y-%m-%d %H:%M:%S UTC")));
    if let Some(c) = a.comment.as_deref().filter(|c| !c.is_empty()) {
        line.push_str(&format!(": {c}"));
    }
    line
}
