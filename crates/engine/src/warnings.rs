//! "Succeeded with warnings": a run that succeeded while a `check` was not `ok` (a warning, or
//! a critical value under `fail_on: never` or `on_failure: continue`).
//!
//! Derived from the recorded step results, never stored apart: the engine at the end of a run,
//! `cairn runs`, `cairn show` and the reports all call [`check_warnings`] on the same records,
//! so they cannot disagree, and a run recorded before this existed reads the same way.

use cairn_state::{StepRecord, StepStatus};
use serde::Serialize;
use serde_json::Value as Json;

/// One `check` (or one `for_each` item of a check) that ended in another state than `ok`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckWarning {
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    /// `warning`, `critical` or `unknown`.
    pub state: String,
    /// The measured value as recorded (a number, or what the template gave for `unknown`).
    pub value: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl std::fmt::Display for CheckWarning {
    /// `pool: warning 85 %`, `disk[1]: critical 97`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.step)?;
        if let Some(i) = self.item {
            write!(f, "[{i}]")?;
        }
        let value = match &self.value {
            Json::Number(n) => match n.as_f64() {
                Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
                _ => n.to_string(),
            },
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        write!(f, ": {} {value}", self.state)?;
        if let Some(u) = &self.unit {
            write!(f, " {u}")?;
        }
        Ok(())
    }
}

/// The state of a `check` result (`{"value", "state", "warning", "critical", "unit"}`), or
/// `None` when `result` does not have that shape.
pub fn check_state(result: &Json) -> Option<&str> {
    let m = result.as_object()?;
    if !["value", "warning", "critical", "unit"]
        .iter()
        .all(|k| m.contains_key(*k))
    {
        return None;
    }
    m.get("state")
        .and_then(Json::as_str)
        .filter(|s| matches!(*s, "ok" | "warning" | "critical" | "unknown"))
}

/// The checks of a run that ended in another state than `ok`, in record order.
///
/// `kind_of` gives a step's kind when the runbook is known (`None` otherwise): a step of another
/// kind is never a check, even if its result looks like one (a `uses` step's result is the
/// sub-runbook's `outputs`, which an author may shape freely). Without the kind, the shape of
/// the result decides. Steps that did not end (running, waiting, cancelled) and skipped steps
/// are not counted: they measured nothing.
pub fn check_warnings(
    steps: &[StepRecord],
    kind_of: impl Fn(&str) -> Option<&'static str>,
) -> Vec<CheckWarning> {
    steps
        .iter()
        .filter(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Failed))
        .filter(|s| kind_of(&s.step_id).is_none_or(|k| k == "check"))
        .filter_map(|s| {
            let result = s.result.as_ref()?;
            let state = check_state(result)?;
            (state != "ok").then(|| CheckWarning {
                step: s.step_id.clone(),
                item: s.item,
                state: state.to_string(),
                value: result.get("value").cloned().unwrap_or(Json::Null),
                unit: result
                    .get("unit")
                    .and_then(Json::as_str)
                    .map(str::to_string),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str, item: Option<u32>, status: StepStatus, result: Json) -> StepRecord {
        StepRecord {
            status,
            result: Some(result),
            ..StepRecord::new("r", id, item, "h")
        }
    }

    fn check(state: &str, value: Json) -> Json {
        json!({"value": value, "state": state, "warning": "> 80", "critical": "> 95", "unit": "%"})
    }

    #[test]
    fn only_checks_not_ok_that_ended_count() {
        let steps = vec![
            record("ok", None, StepStatus::Succeeded, check("ok", json!(5.0))),
            record(
                "w",
                None,
                StepStatus::Succeeded,
                check("warning", json!(85.0)),
            ),
            record(
                "c",
                None,
                StepStatus::Failed,
                check("critical", json!(97.0)),
            ),
            record(
                "items",
                Some(1),
                StepStatus::Succeeded,
                check("unknown", json!("abc")),
            ),
            record(
                "cut",
                None,
                StepStatus::Running,
                check("warning", json!(85.0)),
            ),
            record(
                "sh",
                None,
                StepStatus::Succeeded,
                json!({"exit_code": 0, "state": "warning"}),
            ),
            record(
                "sub",
                None,
                StepStatus::Succeeded,
                check("warning", json!(1.0)),
            ),
        ];
        let kind = |id: &str| (id == "sub").then_some("uses");
        let shown: Vec<String> = check_warnings(&steps, kind)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "w: warning 85 %",
                "c: critical 97 %",
                "items[1]: unknown abc %"
            ]
        );
    }
}
