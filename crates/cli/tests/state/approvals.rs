//! Approval gates without a terminal: the run pauses (exit 3), `cairn approve`/`reject`
//! answer, `cairn resume` goes on; timeouts answer by themselves.

use crate::common::Sandbox;
use std::time::Duration;

/// The gate lets the run's starter answer (these tests answer as the user who ran them; who
/// may answer is tested in `gates.rs`, with real users).
fn gated(sb: &Sandbox, approval: &str) -> String {
    let approval = match approval.strip_prefix("{ ") {
        Some(rest) => format!("{{ allow_self_approval: true, {rest}"),
        None => format!("{{ message: \"{approval}\", allow_self_approval: true }}"),
    };
    format!(
        "cairn: 1
name: gated
steps:
  - id: before
    shell: echo before >> {log}
  - id: gate
    approval: {approval}
  - id: after
    shell: echo after >> {log}
",
        log = sb.file("log.txt")
    )
}

/// Runs to the pause and returns the run id.
fn pause(sb: &Sandbox, approval: &str) -> String {
    sb.write("rb.yaml", gated(sb, approval));
    let paused = sb.run("rb.yaml", &[]);
    paused.expect(3);
    assert_eq!(paused.outcome(), "paused", "{paused}");
    assert_eq!(sb.lines("log.txt"), ["before"]);
    let run = paused.run_id();
    assert_eq!(sb.only_run()["status"], "paused");
    assert_eq!(sb.step(&run, "gate")["status"], "waiting");
    run
}

#[test]
fn approve_then_resume_finishes_the_run() {
    let sb = Sandbox::new();
    let run = pause(&sb, "Point DNS at the new stack, then approve.");
    sb.cairn(&["approve", &run, "gate", "--by", "alice"])
        .expect(0)
        .says("approved `gate`");
    // Approving does not run anything by itself.
    assert_eq!(sb.lines("log.txt"), ["before"]);
    let done = sb.resume(&run, &[]);
    done.expect(0);
    assert_eq!(done.started(), ["after"], "{done}");
    assert_eq!(sb.lines("log.txt"), ["before", "after"]);

    let shown = sb.show(&run);
    assert_eq!(shown["run"]["status"], "succeeded");
    let approvals = shown["approvals"].as_array().expect("approvals");
    assert_eq!(approvals.len(), 1, "{shown:#}");
    assert_eq!(approvals[0]["step_id"], "gate");
    assert_eq!(approvals[0]["decision"], "approved");
    // `--by` is a comment; the answer is the uid's.
    assert_eq!(approvals[0]["by"], crate::common::whoami());
    assert_eq!(approvals[0]["comment"], "alice");
    let gate = sb.step(&run, "gate");
    assert_eq!(gate["status"], "succeeded");
    assert_eq!(gate["result"]["approved_by"], crate::common::whoami());
}

#[test]
fn reject_fails_the_step_on_resume() {
    let sb = Sandbox::new();
    let run = pause(&sb, "Drop the old cluster?");
    sb.cairn(&["reject", &run, "gate", "--by", "bob"])
        .expect(0)
        .says("rejected `gate`");
    let failed = sb.resume(&run, &[]);
    failed.expect(1);
    assert_eq!(failed.outcome(), "failed", "{failed}");
    assert!(failed.started().is_empty(), "{failed}");
    assert_eq!(sb.lines("log.txt"), ["before"]);
    let gate = sb.step(&run, "gate");
    assert_eq!(gate["status"], "failed");
    assert_eq!(
        gate["error"],
        format!("rejected by {}", crate::common::whoami())
    );
    assert_eq!(gate["result"]["approved"], false);
    assert_eq!(sb.only_run()["status"], "failed");

    // A "no" is final: resuming again does not ask again.
    let again = sb.resume(&run, &[]);
    again.expect(1);
    assert_eq!(sb.step(&run, "gate")["status"], "failed");
    // Asking again is an explicit choice.
    let asked = sb.resume(&run, &["--rerun", "gate"]);
    asked.expect(3);
    assert_eq!(sb.step(&run, "gate")["status"], "waiting");
    sb.cairn(&["approve", &run, "gate", "--by", "carol"])
        .expect(0);
    sb.resume(&run, &[]).expect(0);
    assert_eq!(sb.lines("log.txt"), ["before", "after"]);
    assert_eq!(
        sb.step(&run, "gate")["result"]["approved_by"],
        crate::common::whoami()
    );
}

/// `--from` an approval step asks the human again; the earlier yes does not carry over.
#[test]
fn from_an_approval_asks_again() {
    let sb = Sandbox::new();
    let run = pause(&sb, "Go?");
    sb.cairn(&["approve", &run, "gate", "--by", "alice"])
        .expect(0);
    sb.resume(&run, &[]).expect(0);
    sb.resume(&run, &["--from", "gate"]).expect(3);
    sb.resume(&run, &[]).expect(3);
    assert_eq!(sb.lines("log.txt"), ["before", "after"]);
    sb.cairn(&["approve", &run, "gate", "--by", "dave"])
        .expect(0);
    sb.resume(&run, &[]).expect(0);
    assert_eq!(sb.lines("log.txt"), ["before", "after", "after"]);
}

#[test]
fn a_timed_out_approval_answers_by_on_timeout() {
    let sb = Sandbox::new();
    let run = pause(&sb, "{ message: Go?, timeout: 1s, on_timeout: approve }");
    std::thread::sleep(Duration::from_millis(1500));
    let done = sb.resume(&run, &[]);
    done.expect(0);
    assert_eq!(sb.lines("log.txt"), ["before", "after"]);
    let gate = sb.step(&run, "gate");
    assert_eq!(gate["status"], "succeeded");
    assert_eq!(gate["result"]["approved_by"], "timeout");
}

#[test]
fn an_early_resume_does_not_restart_the_approval_timeout() {
    let sb = Sandbox::new();
    let run = pause(&sb, "{ message: Go?, timeout: 2s, on_timeout: approve }");
    std::thread::sleep(Duration::from_millis(1300));
    // Unanswered and not timed out yet: still paused.
    sb.resume(&run, &[]).expect(3);
    std::thread::sleep(Duration::from_millis(1300));
    // 2.6 s since the wait began (not since the early resume): the timeout answers.
    sb.resume(&run, &[]).expect(0);
    assert_eq!(sb.step(&run, "gate")["result"]["approved_by"], "timeout");
}

#[test]
fn a_timed_out_approval_rejects_by_default() {
    let sb = Sandbox::new();
    let run = pause(&sb, "{ message: Go?, timeout: 1s }");
    std::thread::sleep(Duration::from_millis(1500));
    sb.resume(&run, &[]).expect(1);
    assert_eq!(sb.lines("log.txt"), ["before"]);
    let gate = sb.step(&run, "gate");
    assert_eq!(gate["status"], "failed");
    assert_eq!(gate["error"], "rejected by timeout");
}

#[test]
fn answering_what_does_not_wait_is_a_usage_error() {
    let sb = Sandbox::new();
    let run = pause(&sb, "Go?");
    sb.cairn(&["approve", &run, "before"])
        .expect(2)
        .says("step `before` of run")
        .says("not waiting for approval");
    sb.cairn(&["reject", &run, "nope"])
        .expect(2)
        .says("has no waiting step `nope` (waiting: gate)");
    sb.cairn(&["approve", "01NOSUCHRUN", "gate"])
        .expect(2)
        .says("no run `01NOSUCHRUN`");
    // None of these recorded anything.
    assert_eq!(sb.show(&run)["approvals"], serde_json::json!([]));
}
