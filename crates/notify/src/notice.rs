//! What a notification says: one [`Notice`] per run event, and its texts.
//!
//! A notice carries only the runbook's name, the run id, the step id and a message. The engine
//! builds it from text that went through its masking door (the gate's rendered message, the
//! run's error), so a notice holds no secret value; the senders add nothing but the notifier's
//! own settings (a signature, a routing key) to the request.

use serde::Serialize;

/// The run events a notice reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// An approval gate waits for an answer.
    Waiting,
    /// A waiting gate was answered (approved, rejected or timed out).
    Answered,
    /// The run ended failed.
    Failed,
    /// The run ended succeeded.
    Succeeded,
    /// The run stopped to wait for an answer.
    Paused,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Waiting => "waiting",
            Event::Answered => "answered",
            Event::Failed => "failed",
            Event::Succeeded => "succeeded",
            Event::Paused => "paused",
        }
    }
}

/// One thing to tell: serialized as is for `webhook` notifiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub event: Event,
    pub runbook: String,
    pub run_id: String,
    /// The gate (or the step the run stopped at); `None` for the run as a whole.
    pub step: Option<String>,
    /// The gate's message, the answer, or the run's error.
    pub message: String,
    /// `cairn approve RUN STEP`, when there is a gate to answer.
    pub approve_command: Option<String>,
    /// `cairn reject RUN STEP`, when there is a gate to answer.
    pub reject_command: Option<String>,
    /// `cairn/RUN/STEP` for a gate, `cairn/RUN` for the run: a PagerDuty incident's key, the
    /// same for the notice that opens it and the one that resolves it.
    pub dedup_key: String,
    /// The run's page in the web console (`cairn serve`): `$CAIRN_URL/runs/RUN`, when
    /// `CAIRN_URL` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The run's page under a console's base URL (`https://cairn.example/`): `None` without one,
/// or with one that is not `http://` or `https://`.
pub fn run_url(base: Option<&str>, run_id: &str) -> Option<String> {
    let base = base?.trim().trim_end_matches('/');
    (base.starts_with("https://") || base.starts_with("http://"))
        .then(|| format!("{base}/runs/{}", urlencoding_path(run_id)))
}

// A run id is a ULID; anything else is kept to the characters a path segment may hold as is.
fn urlencoding_path(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect()
}

impl Notice {
    /// A notice about `step` (a gate) or, with `None`, about the run. The approve and reject
    /// commands are filled in when the event asks a human to act (a gate waits, or the run
    /// paused at one).
    pub fn new(
        event: Event,
        runbook: impl Into<String>,
        run_id: impl Into<String>,
        step: Option<String>,
        message: impl Into<String>,
    ) -> Notice {
        let run_id = run_id.into();
        let run_id_for_url = run_id.clone();
        let asks = matches!(event, Event::Waiting | Event::Paused);
        let command = |verb: &str| {
            step.as_ref()
                .filter(|_| asks)
                .map(|s| format!("cairn {verb} {run_id} {s}"))
        };
        let dedup_key = match &step {
            // Step ids hold no `/`, so a gate's key never equals the run's.
            Some(s) => format!("cairn/{run_id}/{s}"),
            None => format!("cairn/{run_id}"),
        };
        Notice {
            event,
            runbook: runbook.into(),
            approve_command: command("approve"),
            reject_command: command("reject"),
            run_id,
            step,
            message: message.into(),
            dedup_key,
            url: run_url(std::env::var("CAIRN_URL").ok().as_deref(), &run_id_for_url),
        }
    }

    /// A gate waits: `message` is its rendered (masked) message.
    pub fn gate_waiting(
        runbook: impl Into<String>,
        run_id: impl Into<String>,
        step: impl Into<String>,
        message: impl Into<String>,
    ) -> Notice {
        Notice::new(Event::Waiting, runbook, run_id, Some(step.into()), message)
    }

    /// A waiting gate was answered: `message` says how and by whom.
    pub fn gate_answered(
        runbook: impl Into<String>,
        run_id: impl Into<String>,
        step: impl Into<String>,
        message: impl Into<String>,
    ) -> Notice {
        Notice::new(Event::Answered, runbook, run_id, Some(step.into()), message)
    }

    /// One line: the subject of a mail, the summary of a PagerDuty incident.
    pub fn summary(&self) -> String {
        let Notice {
            runbook, run_id, ..
        } = self;
        let step = self.step.as_deref().unwrap_or("");
        let msg = first_line(&self.message);
        match (self.event, self.step.is_some()) {
            (Event::Waiting, _) => {
                format!("cairn: {runbook} run {run_id} waits for approval at `{step}`: {msg}")
            }
            (Event::Answered, _) => {
                format!("cairn: {runbook} run {run_id}: `{step}` answered: {msg}")
            }
            (Event::Failed, _) => format!("cairn: {runbook} run {run_id} failed: {msg}"),
            (Event::Succeeded, _) => format!("cairn: {runbook} run {run_id} succeeded"),
            (Event::Paused, true) => {
                format!("cairn: {runbook} run {run_id} paused at `{step}`: {msg}")
            }
            (Event::Paused, false) => format!("cairn: {runbook} run {run_id} paused: {msg}"),
        }
    }

    /// The whole notice as plain text: the body of a mail.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{}\n\nrunbook: {}\nrun:     {}\n",
            self.summary(),
            self.runbook,
            self.run_id
        );
        if let Some(s) = &self.step {
            out.push_str(&format!("step:    {s}\n"));
        }
        out.push_str(&format!("event:   {}\n", self.event.as_str()));
        if !self.message.is_empty() {
            out.push_str(&format!("\n{}\n", self.message));
        }
        if let (Some(a), Some(r)) = (&self.approve_command, &self.reject_command) {
            out.push_str(&format!("\nTo approve:  {a}\nTo reject:   {r}\n"));
        }
        if let Some(u) = &self.url {
            out.push_str(&format!("\nIn the console: {u}\n"));
        }
        out
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_keys() {
        let w = Notice::gate_waiting("rb", "R1", "gate", "ok?");
        assert_eq!(w.approve_command.as_deref(), Some("cairn approve R1 gate"));
        assert_eq!(w.reject_command.as_deref(), Some("cairn reject R1 gate"));
        assert_eq!(w.dedup_key, "cairn/R1/gate");
        let a = Notice::gate_answered("rb", "R1", "gate", "approved by alice");
        assert_eq!(a.dedup_key, w.dedup_key);
        assert_eq!(a.approve_command, None);
        let f = Notice::new(Event::Failed, "rb", "R1", None, "exit 1\nmore");
        assert_eq!(f.dedup_key, "cairn/R1");
        assert_eq!(f.summary(), "cairn: rb run R1 failed: exit 1");
        let p = Notice::new(Event::Paused, "rb", "R1", Some("gate".into()), "ok?");
        assert_eq!(p.approve_command.as_deref(), Some("cairn approve R1 gate"));
    }

    #[test]
    fn the_run_page_under_the_console_url() {
        assert_eq!(
            run_url(Some("https://cairn.example/ops/"), "01JRUN").as_deref(),
            Some("https://cairn.example/ops/runs/01JRUN")
        );
        assert_eq!(run_url(None, "01JRUN"), None);
        assert_eq!(run_url(Some("javascript:alert(1)"), "01JRUN"), None);
        assert_eq!(
            run_url(Some("http://h"), "01J/../x").as_deref(),
            Some("http://h/runs/01Jx")
        );
    }
}
