//! Who may answer an approval gate, and when its answers decide it. One set of rules for every
//! door an answer comes through: the run's terminal prompt, `cairn approve`/`reject` from any
//! shell, `--auto-approve`, a timeout, and the resume that reads the answers back.
//!
//! The rules are written into the gate's record when it starts waiting ([`Rules::to_json`]),
//! so the answers are judged by the rules the approvers were shown, even if the file changes.
//! Deciding is pure ([`admit`], [`judge`]); the only effect is the group lookup, passed in.
//!
//! ```
//! use cairn_engine::gate::{Answer, Rules, Verdict, judge};
//! let rules = Rules { min_approvals: 2, ..Rules::open("carol") };
//! let yes = |by: &str| Answer::new(true, by);
//! assert_eq!(judge(&rules, &[yes("alice")]), Verdict::Pending { have: 1, need: 2 });
//! assert!(matches!(judge(&rules, &[yes("alice"), yes("bob")]), Verdict::Approved { .. }));
//! ```

use cairn_model::{ApprovalStep, OnReject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A gate's rules, as recorded when it started waiting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Who may answer: user names and `group:NAME`; empty means anyone.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Distinct approvals needed.
    pub min_approvals: u32,
    /// May the run's starter approve?
    pub allow_self_approval: bool,
    /// The user who started the run.
    pub starter: String,
    /// After this, answers no longer count: the gate's `on_timeout` decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// Whether a rejection fails the run or skips what needs the gate.
    #[serde(default)]
    pub on_reject: OnReject,
}

impl Rules {
    /// Anyone but the starter, one answer, no deadline.
    pub fn open(starter: &str) -> Rules {
        Rules {
            approvers: Vec::new(),
            min_approvals: 1,
            allow_self_approval: false,
            starter: starter.to_string(),
            deadline: None,
            on_reject: OnReject::Fail,
        }
    }

    /// The rules of gate `a` of a run started by `starter`, waiting since `since`.
    pub fn of(a: &ApprovalStep, starter: &str, since: DateTime<Utc>) -> Rules {
        Rules {
            approvers: a.approvers.iter().map(|s| s.value.clone()).collect(),
            min_approvals: a.min_approvals.as_ref().map_or(1, |m| m.value.max(1)),
            allow_self_approval: a.allow_self_approval.unwrap_or(false),
            starter: starter.to_string(),
            deadline: a
                .timeout
                .as_ref()
                .and_then(|t| chrono::Duration::from_std(t.value.0).ok())
                .map(|t| since + t),
            on_reject: a.on_reject.unwrap_or_default(),
        }
    }

    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }

    /// The rules recorded in a waiting gate's result, if any.
    pub fn from_result(result: &Json) -> Option<Rules> {
        serde_json::from_value(result.get("rules")?.clone()).ok()
    }

    /// One line for a prompt or a plan: who may answer, how many.
    pub fn describe(&self) -> String {
        let who = if self.approvers.is_empty() {
            "anyone".to_string()
        } else {
            self.approvers.join(", ")
        };
        let mut s = if self.min_approvals > 1 {
            format!("{} distinct approvals from {who}", self.min_approvals)
        } else {
            format!("one approval from {who}")
        };
        if !self.allow_self_approval {
            s.push_str(&format!(" (not {}, who started the run)", self.starter));
        }
        s
    }
}

/// One answer, from any door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub approved: bool,
    pub by: String,
    pub at: DateTime<Utc>,
}

impl Answer {
    /// An answer given now.
    pub fn new(approved: bool, by: &str) -> Answer {
        Answer {
            approved,
            by: by.to_string(),
            at: cairn_state::now(),
        }
    }

    pub fn of(a: &cairn_state::Approval) -> Answer {
        Answer {
            approved: a.decision == cairn_state::Decision::Approved,
            by: a.by.clone(),
            at: a.at,
        }
    }
}

/// Why an answer is not taken. Each names the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("nobody is named: an answer needs the identity of who gives it")]
    Nameless,
    #[error("{who} may not answer this gate: its approvers are {}", .approvers.join(", "))]
    NotApprover { who: String, approvers: Vec<String> },
    #[error(
        "{who} started this run and may not approve it (`allow_self_approval: false`): another approver must answer"
    )]
    SelfApproval { who: String },
    #[error(
        "{who} has already answered this gate: each approval must come from a different person"
    )]
    Twice { who: String },
    #[error(
        "the gate timed out at {deadline}: answers after it do not count (`on_timeout` decided)"
    )]
    TooLate { deadline: DateTime<Utc> },
    #[error("the gate is already decided")]
    Decided,
}

/// How the gate stands on its answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Approved {
        by: Vec<String>,
    },
    Rejected {
        by: String,
    },
    /// Not decided yet: `have` distinct approvals of the `need`ed.
    Pending {
        have: u32,
        need: u32,
    },
}

/// Is `who` one of the gate's approvers (directly or by group)? `member` answers whether a
/// user is in a Unix group.
pub fn may_answer(rules: &Rules, who: &str, member: &dyn Fn(&str, &str) -> bool) -> bool {
    rules.approvers.is_empty()
        || rules
            .approvers
            .iter()
            .any(|a| match a.strip_prefix("group:") {
                Some(g) => member(who, g),
                None => a == who,
            })
}

/// May `answer` be added to the gate's `earlier` answers? Checks the answer alone; whether
/// the gate is then decided is [`judge`]'s.
pub fn admit(
    rules: &Rules,
    earlier: &[Answer],
    answer: &Answer,
    member: &dyn Fn(&str, &str) -> bool,
) -> Result<(), Refusal> {
    let who = answer.by.trim();
    if who.is_empty() {
        return Err(Refusal::Nameless);
    }
    if let Some(deadline) = rules.deadline
        && answer.at > deadline
    {
        return Err(Refusal::TooLate { deadline });
    }
    if !matches!(judge(rules, earlier), Verdict::Pending { .. }) {
        return Err(Refusal::Decided);
    }
    // The starter may always decline their own change; approving it takes someone else.
    let own_no = !answer.approved && who == rules.starter;
    if !own_no && !may_answer(rules, who, member) {
        return Err(Refusal::NotApprover {
            who: who.to_string(),
            approvers: rules.approvers.clone(),
        });
    }
    if answer.approved && who == rules.starter && !rules.allow_self_approval {
        return Err(Refusal::SelfApproval {
            who: who.to_string(),
        });
    }
    if earlier.iter().any(|e| e.by == who) {
        return Err(Refusal::Twice {
            who: who.to_string(),
        });
    }
    Ok(())
}

/// The gate's verdict on its answers, in the order given: the first rejection rejects; enough
/// distinct approvals approve. Answers after the deadline do not count.
pub fn judge(rules: &Rules, answers: &[Answer]) -> Verdict {
    let mut by: Vec<String> = Vec::new();
    for a in answers {
        if rules.deadline.is_some_and(|d| a.at > d) {
            continue;
        }
        if !a.approved {
            return Verdict::Rejected { by: a.by.clone() };
        }
        if !by.contains(&a.by) {
            by.push(a.by.clone());
        }
        if by.len() as u32 >= rules.min_approvals.max(1) {
            return Verdict::Approved { by };
        }
    }
    Verdict::Pending {
        have: by.len() as u32,
        need: rules.min_approvals.max(1),
    }
}

/// A decided gate as its step's result: what `steps.GATE.result` reads, and what a resume
/// reads back to keep the answer.
pub fn verdict_json(message: &str, verdict: &Verdict) -> Json {
    let at = cairn_state::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match verdict {
        Verdict::Approved { by } => serde_json::json!({
            "approved": true, "approved_by": by.join(", "), "by": by, "at": at, "message": message,
        }),
        Verdict::Rejected { by } => serde_json::json!({
            "approved": false, "approved_by": by, "by": [by], "at": at, "message": message,
            "declined": true,
        }),
        Verdict::Pending { .. } => serde_json::json!({ "message": message }),
    }
}

/// Did this recorded result come from a "no" (a rejected gate, or a sub-run one ended)?
pub fn is_declined(result: Option<&Json>) -> bool {
    result.and_then(|r| r.get("declined")) == Some(&Json::Bool(true))
}

/// The terminal this process reads (`/dev/pts/3`), recorded with an answer typed on it.
pub fn tty() -> Option<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return None;
    }
    std::fs::read_link("/proc/self/fd/0")
        .ok()
        .map(|p| p.display().to_string())
}

/// Unix group membership: listed as a member, or the user's primary group.
pub fn unix_member(user: &str, group: &str) -> bool {
    use nix::unistd::{Group, User};
    let Ok(Some(g)) = Group::from_name(group) else {
        return false;
    };
    g.mem.iter().any(|m| m == user)
        || User::from_name(user)
            .ok()
            .flatten()
            .is_some_and(|u| u.gid == g.gid)
}

/// The answers recorded for `step` since its wait began, oldest first.
pub fn answers_since(
    approvals: &[cairn_state::Approval],
    step: &str,
    since: Option<DateTime<Utc>>,
) -> Vec<Answer> {
    approvals
        .iter()
        .filter(|a| a.step_id == step && since.is_none_or(|s| a.at >= s))
        .map(Answer::of)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nobody(_: &str, _: &str) -> bool {
        false
    }

    fn rules() -> Rules {
        Rules::open("carol")
    }

    #[test]
    fn the_starter_may_not_approve_but_may_decline() {
        let r = rules();
        let e = admit(&r, &[], &Answer::new(true, "carol"), &nobody);
        assert_eq!(
            e,
            Err(Refusal::SelfApproval {
                who: "carol".into()
            })
        );
        assert_eq!(
            admit(&r, &[], &Answer::new(false, "carol"), &nobody),
            Ok(())
        );
        let allowed = Rules {
            allow_self_approval: true,
            ..rules()
        };
        assert_eq!(
            admit(&allowed, &[], &Answer::new(true, "carol"), &nobody),
            Ok(())
        );
    }

    #[test]
    fn approvers_by_name_and_by_group() {
        let r = Rules {
            approvers: vec!["alice".into(), "group:dba".into()],
            ..rules()
        };
        let dba = |u: &str, g: &str| u == "dave" && g == "dba";
        assert_eq!(admit(&r, &[], &Answer::new(true, "alice"), &dba), Ok(()));
        assert_eq!(admit(&r, &[], &Answer::new(true, "dave"), &dba), Ok(()));
        assert!(matches!(
            admit(&r, &[], &Answer::new(true, "mallory"), &dba),
            Err(Refusal::NotApprover { .. })
        ));
        // A "no" is an answer too: not from just anyone.
        assert!(matches!(
            admit(&r, &[], &Answer::new(false, "mallory"), &dba),
            Err(Refusal::NotApprover { .. })
        ));
    }

    #[test]
    fn a_quorum_needs_distinct_people_and_one_no_rejects() {
        let r = Rules {
            min_approvals: 2,
            ..rules()
        };
        let a = Answer::new(true, "alice");
        assert_eq!(
            judge(&r, std::slice::from_ref(&a)),
            Verdict::Pending { have: 1, need: 2 }
        );
        assert_eq!(
            admit(
                &r,
                std::slice::from_ref(&a),
                &Answer::new(true, "alice"),
                &nobody
            ),
            Err(Refusal::Twice {
                who: "alice".into()
            })
        );
        // The same person twice (as the store could hold it) still counts once.
        assert_eq!(
            judge(&r, &[a.clone(), a.clone()]),
            Verdict::Pending { have: 1, need: 2 }
        );
        let no = Answer::new(false, "bob");
        assert_eq!(
            judge(&r, &[a.clone(), no]),
            Verdict::Rejected { by: "bob".into() }
        );
        let yes = Answer::new(true, "bob");
        assert_eq!(
            judge(&r, &[a, yes]),
            Verdict::Approved {
                by: vec!["alice".into(), "bob".into()]
            }
        );
    }

    #[test]
    fn answers_after_the_deadline_do_not_count() {
        let now = cairn_state::now();
        let r = Rules {
            deadline: Some(now - chrono::Duration::seconds(1)),
            ..rules()
        };
        let late = Answer::new(true, "alice");
        assert!(matches!(
            admit(&r, &[], &late, &nobody),
            Err(Refusal::TooLate { .. })
        ));
        assert_eq!(judge(&r, &[late]), Verdict::Pending { have: 0, need: 1 });
    }

    #[test]
    fn an_empty_name_is_no_identity() {
        assert_eq!(
            admit(&rules(), &[], &Answer::new(true, "  "), &nobody),
            Err(Refusal::Nameless)
        );
    }

    #[test]
    fn a_decided_gate_takes_no_more_answers() {
        let r = rules();
        let done = [Answer::new(false, "alice")];
        assert_eq!(
            admit(&r, &done, &Answer::new(true, "bob"), &nobody),
            Err(Refusal::Decided)
        );
    }

    #[test]
    fn the_rules_survive_the_record() {
        let r = Rules {
            approvers: vec!["group:dba".into()],
            min_approvals: 2,
            deadline: Some(cairn_state::now()),
            on_reject: OnReject::Skip,
            ..rules()
        };
        let result = serde_json::json!({ "message": "go?", "rules": r.to_json() });
        assert_eq!(Rules::from_result(&result), Some(r));
    }
}
