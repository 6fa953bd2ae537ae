//! A step made ready once, before anything runs: its settings resolved against the runbook's
//! `defaults`, durations as [`Duration`], its conditions typed. The dry-run prints it and the
//! run obeys it; neither reads these settings from the model again, so a plan cannot show a
//! timeout, a retry or a `when` that the run would not apply. (The templates are rendered per
//! attempt into a [`crate::prepare::Prepared`]: they need the values of the moment.)

use crate::prepare::fmt_dur;
pub use crate::prepare::{Condition, Gate};
use cairn_model::{Checked, OnFailure, Retry, Runbook, Step, StepKind, Tmpl};
use std::time::Duration;

/// One step's settings, as the scheduler applies them.
#[derive(Clone, Debug)]
pub struct StepAction {
    /// The step's kind (`shell`, `sql`, ...).
    pub kind: &'static str,
    /// `when`: decided once for the whole step, before any `for_each` item.
    pub when: Option<Condition>,
    /// The step's `timeout`, else the runbook's default.
    pub timeout: Option<Duration>,
    /// The step's `timeout` written as a template, rendered when each attempt starts (then
    /// `timeout` is `None`: the default does not apply).
    pub timeout_template: Option<Tmpl>,
    /// The step's `retry`, else the runbook's default; one attempt without either.
    pub retry: RetryPolicy,
    /// The step's `on_failure`, else the runbook's default, else abort.
    pub on_failure: OnFailure,
    /// Safe to run again after a crash interrupted it.
    pub idempotent: bool,
    /// How many `for_each` items run at once.
    pub concurrency: usize,
    /// An approval's deadline, when the step is one.
    pub gate: Option<Gate>,
}

impl StepAction {
    /// The step's settings in `rb` (validation has checked every value).
    pub fn of(rb: &Runbook, step: &Step) -> StepAction {
        // A gate is answered, not attempted: the runbook's default timeout and retry are for
        // actions (its own `timeout` is its deadline, in `gate`).
        let gate = matches!(step.kind, StepKind::Approval(_));
        let defaults = rb.defaults.as_ref().filter(|_| !gate);
        StepAction {
            kind: step.kind.name(),
            when: step.when.clone().map(Condition),
            timeout: step
                .timeout
                .as_ref()
                .or(defaults
                    .filter(|_| step.timeout_template.is_none())
                    .and_then(|d| d.timeout.as_ref()))
                .map(|t| t.value.0),
            timeout_template: step.timeout_template.clone(),
            retry: RetryPolicy::of(
                step.retry
                    .as_ref()
                    .or(defaults.and_then(|d| d.retry.as_ref())),
            ),
            on_failure: step
                .on_failure
                .or(defaults.and_then(|d| d.on_failure))
                .unwrap_or(OnFailure::Abort),
            idempotent: step.idempotent(),
            concurrency: step
                .concurrency
                .as_ref()
                .map_or(1, |c| c.value.max(1) as usize),
            gate: match &step.kind {
                StepKind::Approval(a) => Some(Gate::of(a)),
                _ => None,
            },
        }
    }

    /// Every step of a checked runbook, `steps` then `finally` (the engine's step indexes).
    pub fn all(checked: &Checked) -> Vec<StepAction> {
        checked
            .all_steps()
            .map(|s| StepAction::of(&checked.runbook, s))
            .collect()
    }
}

/// Attempts and the delays between them.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, including the first (at least 1).
    pub attempts: u32,
    /// Before the second attempt, as written (the default is 1 s).
    pub delay: Option<Duration>,
    /// Factor applied to the delay after each attempt, as written (the default is 1).
    pub backoff: Option<f64>,
    pub max_delay: Option<Duration>,
    pub jitter: bool,
}

impl RetryPolicy {
    /// No retry: one attempt.
    pub const ONCE: RetryPolicy = RetryPolicy {
        attempts: 1,
        delay: None,
        backoff: None,
        max_delay: None,
        jitter: false,
    };

    fn of(retry: Option<&Retry>) -> RetryPolicy {
        match retry {
            None => RetryPolicy::ONCE,
            Some(r) => RetryPolicy {
                attempts: r.attempts.max(1),
                delay: r.delay.map(|d| d.0),
                backoff: r.backoff,
                max_delay: r.max_delay.map(|d| d.0),
                jitter: r.jitter.unwrap_or(false),
            },
        }
    }

    /// Delay before the attempt after `attempt` (1-based): delay × backoff^(attempt-1), capped,
    /// with up to ±50 % jitter when asked.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let base = self.delay.unwrap_or(Duration::from_secs(1)).as_secs_f64();
        let mut secs = base
            * self
                .backoff
                .unwrap_or(1.0)
                .powi(attempt.saturating_sub(1) as i32);
        if let Some(max) = self.max_delay {
            secs = secs.min(max.as_secs_f64());
        }
        if self.jitter {
            secs *= 0.5 + rand::random::<f64>();
        }
        // NaN (a zero delay times an infinite factor) is no wait; never panic on a float.
        Duration::try_from_secs_f64(secs.clamp(0.0, 86_400.0)).unwrap_or(Duration::ZERO)
    }

    /// How the dry-run shows it (`3 attempts, delay 2s, backoff x2`); `None` for one attempt.
    pub fn shown(&self) -> Option<String> {
        if self.attempts <= 1 {
            return None;
        }
        let mut text = format!("{} attempts", self.attempts);
        if let Some(d) = self.delay {
            text.push_str(&format!(", delay {}", fmt_dur(d)));
        }
        if let Some(b) = self.backoff.filter(|b| *b != 1.0) {
            text.push_str(&format!(", backoff x{b}"));
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_model::OnTimeout;

    fn actions(yaml: &str) -> Vec<StepAction> {
        let templates = cairn_template::Templates::new();
        let (checked, diags) = cairn_model::check("t.yaml".as_ref(), yaml, &templates);
        let checked = checked.unwrap_or_else(|| panic!("{diags:?}"));
        StepAction::all(&checked)
    }

    #[test]
    fn a_steps_own_settings_win_over_the_defaults_which_fill_the_rest() {
        let a = actions(
            r#"cairn: 1
name: t
defaults:
  timeout: 10m
  retry: { attempts: 2 }
  on_failure: continue
steps:
  - id: own
    timeout: 5s
    retry: { attempts: 4, delay: 2s, backoff: 3, max_delay: 10s }
    on_failure: abort
    idempotent: false
    shell: "true"
  - id: inherits
    shell: "true"
  - id: gate
    approval: { message: go, timeout: 1h, on_timeout: approve }
finally:
  - id: last
    for_each: [1, 2]
    concurrency: 2
    when: "{{ true }}"
    shell: "true"
"#,
        );
        let ids: Vec<&str> = a.iter().map(|a| a.kind).collect();
        assert_eq!(ids, ["shell", "shell", "approval", "shell"]);
        let own = &a[0];
        assert_eq!(own.timeout, Some(Duration::from_secs(5)));
        assert_eq!(own.retry.attempts, 4);
        assert_eq!(own.on_failure, OnFailure::Abort);
        assert!(!own.idempotent);
        // 2 s, 6 s, then 18 s capped at 10 s.
        let delays: Vec<u64> = (1..=3)
            .map(|k| own.retry.delay_after(k).as_secs())
            .collect();
        assert_eq!(delays, [2, 6, 10]);
        assert_eq!(
            own.retry.shown().as_deref(),
            Some("4 attempts, delay 2s, backoff x3")
        );
        let inherits = &a[1];
        assert_eq!(inherits.timeout, Some(Duration::from_secs(600)));
        assert_eq!(inherits.retry.attempts, 2);
        assert_eq!(inherits.retry.delay_after(1), Duration::from_secs(1));
        assert_eq!(inherits.on_failure, OnFailure::Continue);
        assert!(inherits.idempotent && inherits.gate.is_none() && inherits.when.is_none());
        assert_eq!(
            a[2].gate,
            Some(Gate {
                timeout: Some(Duration::from_secs(3600)),
                on_timeout: OnTimeout::Approve
            })
        );
        assert_eq!(a[3].concurrency, 2);
        assert_eq!(a[3].when.as_ref().map(Condition::src), Some("{{ true }}"));
    }

    #[test]
    fn one_attempt_without_retry_and_a_delay_that_never_panics() {
        let a = actions("cairn: 1\nname: t\nsteps:\n  - id: a\n    shell: 'true'\n");
        assert_eq!(a[0].retry, RetryPolicy::ONCE);
        assert_eq!(a[0].retry.shown(), None);
        assert_eq!(a[0].timeout, None);
        let wild = RetryPolicy {
            attempts: 3,
            delay: Some(Duration::ZERO),
            backoff: Some(f64::INFINITY),
            max_delay: None,
            jitter: true,
        };
        assert_eq!(wild.delay_after(3), Duration::ZERO);
        let huge = RetryPolicy {
            backoff: Some(100.0),
            delay: Some(Duration::from_secs(60)),
            ..wild
        };
        // Capped at a day, jitter or not.
        assert_eq!(huge.delay_after(1000), Duration::from_secs(86_400));
    }
}
