//! Approval gates an on-call team can trust: a "no" stops everything below it and stays a
//! "no"; an answer is asked once; the answerer is the operating-system user who gave it, by the
//! gate's rules; a prompting run and `cairn approve` from another shell answer the same wait.
//!
//! The identity tests create real Unix users (`useradd`; the tests run as root, as CI does)
//! and keep the state in PostgreSQL, which every user can reach.

use crate::common::{PgSchema, Sandbox, finish, whoami};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const ALICE: &str = "cairn-alice";
const BOB: &str = "cairn-bob";
const DBA: &str = "cairn-dba";

/// `cairn-alice` and `cairn-bob`, with `cairn-bob` in the group `cairn-dba`: made once per test
/// binary. Without root to make them, the tests fail (they never pass by skipping).
fn users() {
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(|| {
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        if !ok(Command::new("getent").args(["group", DBA])) {
            assert!(ok(Command::new("groupadd").arg(DBA)), "groupadd {DBA}");
        }
        for user in [ALICE, BOB] {
            if !ok(Command::new("id").arg(user).stdout(Stdio::null())) {
                assert!(
                    ok(Command::new("useradd").args(["-M", "-s", "/bin/sh", user])),
                    "useradd {user}: the identity tests need root"
                );
            }
        }
        assert!(ok(Command::new("usermod").args(["-aG", DBA, BOB])));
    });
}

/// `cairn ARGS --state URL` as another user, from `/` (the sandbox is private to root).
fn as_user(sb: &Sandbox, user: &str, args: &[&str]) -> crate::common::Out {
    let mut c = Command::new("runuser");
    c.args(["-u", user, "--", env!("CARGO_BIN_EXE_cairn")])
        .args(args)
        .args(["--state", sb.state()])
        .current_dir("/")
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_STATE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    finish(c)
}

fn book(sb: &Sandbox, head: &str, steps: &str) {
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1\nname: gates\n{head}\nsteps:\n{}",
            steps.replace("LOG", &sb.file("log.txt"))
        ),
    );
}

/// `cairn validate rb.yaml` (it takes no state).
fn validate(sb: &Sandbox) -> crate::common::Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.args(["validate", "rb.yaml"])
        .current_dir(sb.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    finish(c)
}

fn paused(sb: &Sandbox) -> String {
    let out = sb.run("rb.yaml", &[]);
    out.expect(3);
    out.run_id()
}

#[test]
fn a_rejection_stops_what_needs_the_gate_even_with_on_failure_continue() {
    let sb = Sandbox::new();
    book(
        &sb,
        "defaults: { on_failure: continue }",
        "  - id: gate
    approval: \"Restart production?\"
  - id: act
    shell: echo ACTED >> LOG
  - id: after_act
    needs: [act]
    shell: echo ACTED-BELOW >> LOG
",
    );
    validate(&sb).expect(0).says("a rejection still never lets");
    let run = paused(&sb);
    sb.cairn(&["reject", &run, "gate"]).expect(0);
    let done = sb.resume(&run, &[]);
    done.expect(1);
    assert_eq!(done.outcome(), "failed", "{done}");
    assert!(!sb.exists("log.txt"), "a rejected restart ran: {done}");
    let note = sb.step(&run, "after_act")["error"].clone();
    assert_eq!(
        note,
        format!("not run: `gate` was rejected by {}", whoami())
    );
    // A "no" is final: a later resume does not ask again, nor run anything.
    let again = sb.resume(&run, &[]);
    again.expect(1);
    assert!(!sb.exists("log.txt"));
    assert!(
        again
            .events()
            .iter()
            .all(|e| e["event"] != "approval_waiting"),
        "{again}"
    );
    // And a late approval has nothing to answer.
    sb.cairn(&["approve", &run, "gate", "-m", "changed my mind"])
        .expect(2)
        .says("not waiting for approval");
    // Asking again is an explicit choice.
    let asked = sb.resume(&run, &["--rerun", "gate"]);
    asked.expect(3);
}

#[test]
fn a_gate_rejected_by_its_timeout_stops_what_needs_it_and_a_late_approval_does_not_count() {
    users();
    let schema = PgSchema::new("gate_timeout");
    let sb = Sandbox::with_state(&schema.url());
    book(
        &sb,
        "defaults: { on_failure: continue }",
        "  - id: gate
    approval: { message: \"Restart?\", timeout: 1s, on_timeout: reject }
  - id: act
    shell: echo ACTED >> LOG
",
    );
    let run = paused(&sb);
    std::thread::sleep(Duration::from_millis(1500));
    as_user(&sb, ALICE, &["approve", &run, "gate"])
        .expect(2)
        .says("timed out");
    let done = sb.resume(&run, &[]);
    done.expect(1);
    assert!(!sb.exists("log.txt"), "{done}");
    assert_eq!(sb.step(&run, "gate")["error"], "rejected by timeout");
}

#[test]
fn on_reject_skip_declines_one_branch_and_the_run_succeeds() {
    let sb = Sandbox::new();
    book(
        &sb,
        "",
        "  - id: diagnose
    shell: echo diagnosed >> LOG
  - id: restart_gate
    needs: [diagnose]
    approval: { message: \"Restart?\", on_reject: skip }
  - id: restart
    needs: [restart_gate]
    shell: echo RESTARTED >> LOG
  - id: report
    needs: [diagnose]
    shell: echo reported >> LOG
",
    );
    let run = paused(&sb);
    sb.cairn(&["reject", &run, "restart_gate", "-m", "not during the sale"])
        .expect(0);
    let metrics = sb.file("run.prom");
    let done = sb.resume(&run, &["--metrics-file", &metrics]);
    done.expect(0);
    let prom = sb.read("run.prom");
    assert!(
        prom.contains("cairn_run_declined{runbook=\"gates\"} 1\n")
            && prom.contains("cairn_run_success{runbook=\"gates\"} 1\n"),
        "{prom}"
    );
    assert_eq!(done.outcome(), "succeeded", "{done}");
    assert_eq!(sb.lines("log.txt"), ["diagnosed", "reported"]);
    let gate = sb.step(&run, "restart_gate");
    assert_eq!(gate["status"], "skipped");
    assert_eq!(gate["error"], format!("declined: rejected by {}", whoami()));
    assert_eq!(sb.step(&run, "restart")["status"], "skipped");
    let shown = sb.show(&run);
    assert_eq!(shown["approvals"][0]["comment"], "not during the sale");
}

#[test]
fn an_answered_gate_is_not_asked_again_below_a_tolerated_failure() {
    users();
    let schema = PgSchema::new("gate_once");
    let sb = Sandbox::with_state(&schema.url());
    book(
        &sb,
        "",
        "  - id: probe
    shell: exit 1
    on_failure: continue
  - id: gate1
    needs: [probe]
    approval: First?
  - id: gate2
    needs: [gate1]
    approval: Second?
  - id: act
    needs: [gate2]
    shell: echo ACTED >> LOG
",
    );
    let run = paused(&sb);
    as_user(&sb, ALICE, &["approve", &run, "gate1"]).expect(0);
    let second = sb.resume(&run, &[]);
    second.expect(3);
    let asked: Vec<String> = second
        .events()
        .iter()
        .filter(|e| e["event"] == "approval_waiting")
        .map(|e| e["step"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(asked, ["gate2"], "{second}");
    assert!(
        !second.started().contains(&"probe".to_string()),
        "a tolerated failure ran again: {second}"
    );
    as_user(&sb, ALICE, &["approve", &run, "gate2"]).expect(0);
    let done = sb.resume(&run, &[]);
    done.expect(0);
    assert_eq!(done.started(), ["act"], "{done}");
    assert_eq!(sb.lines("log.txt"), ["ACTED"]);
    // `--rerun probe` runs it again; the gates below keep their answers (same messages).
    let rerun = sb.resume(&run, &["--rerun", "probe"]);
    assert!(
        rerun
            .events()
            .iter()
            .all(|e| e["event"] != "approval_waiting"),
        "{rerun}"
    );
}

#[test]
fn a_gate_below_a_rerun_asks_again_only_when_its_message_changed() {
    users();
    let schema = PgSchema::new("gate_message");
    let sb = Sandbox::with_state(&schema.url());
    book(
        &sb,
        "",
        "  - id: pick
    shell: cat LOG.dump 2>/dev/null || echo first
    outputs: { dump: \"{{ result.stdout | trim }}\" }
  - id: gate
    needs: [pick]
    approval: \"Restore {{ steps.pick.outputs.dump }}?\"
  - id: act
    needs: [gate]
    shell: echo restored >> LOG
",
    );
    let run = paused(&sb);
    as_user(&sb, ALICE, &["approve", &run, "gate"]).expect(0);
    sb.resume(&run, &[]).expect(0);
    // Same message: the answer stands.
    let same = sb.resume(&run, &["--from", "pick"]);
    same.expect(0);
    assert!(
        same.events()
            .iter()
            .all(|e| e["event"] != "approval_waiting"),
        "{same}"
    );
    // The re-run above changes what the gate shows: it asks again and says why.
    sb.write("log.txt.dump", "second\n");
    let changed = sb.resume(&run, &["--from", "pick"]);
    changed.expect(3);
    let waiting: Vec<_> = changed
        .events()
        .into_iter()
        .filter(|e| e["event"] == "approval_waiting")
        .collect();
    assert_eq!(waiting.len(), 1, "{changed}");
    assert_eq!(waiting[0]["message"], "Restore second?");
    let why = changed
        .events()
        .into_iter()
        .find(|e| e["event"] == "approval_note" && e["step"] == "gate")
        .unwrap_or_else(|| panic!("no reason given: {changed}"));
    assert_eq!(
        why["text"],
        format!("asked again: its message changed since {ALICE} answered it")
    );
}

#[test]
fn a_rejection_in_a_sub_run_with_retry_is_final() {
    let sb = Sandbox::new();
    sb.write(
        "child.yaml",
        "cairn: 1\nname: child\nsteps:\n  - id: gate\n    approval: Go?\n",
    );
    book(
        &sb,
        "",
        "  - id: sub
    uses: child.yaml
    retry: { attempts: 3, delay: 10ms }
  - id: act
    needs: [sub]
    shell: echo ACTED >> LOG
",
    );
    let run = paused(&sb);
    let child = sb
        .runs(&[])
        .into_iter()
        .find(|r| r["runbook"] == "child")
        .expect("child run");
    let child = child["id"].as_str().expect("id").to_string();
    sb.cairn(&["reject", &child, "gate"]).expect(0);
    let done = sb.resume(&run, &[]);
    done.expect(1);
    assert!(!sb.exists("log.txt"));
    let sub = sb.step(&run, "sub");
    assert_eq!(sub["attempt"], 1, "a human no was retried: {sub}");
    let again = sb.resume(&run, &[]);
    again.expect(1);
    assert!(
        again
            .events()
            .iter()
            .all(|e| e["event"] != "approval_waiting"),
        "{again}"
    );
}

#[test]
fn approval_steps_take_no_retry_nor_step_timeout() {
    let sb = Sandbox::new();
    book(
        &sb,
        "",
        "  - id: gate
    approval: Go?
    retry: { attempts: 2 }
    timeout: 5m
",
    );
    validate(&sb)
        .expect(2)
        .says("a gate is never retried")
        .says("has a step `timeout`");
}

#[test]
fn identity_quorum_and_self_approval_with_real_users() {
    users();
    let schema = PgSchema::new("gate_identity");
    let sb = Sandbox::with_state(&schema.url());
    book(
        &sb,
        "",
        &format!(
            "  - id: gate
    approval:
      message: Restore over production?
      approvers: [{ALICE}, \"group:{DBA}\", {me}]
      min_approvals: 2
  - id: act
    needs: [gate]
    shell: echo ACTED >> LOG
",
            me = whoami()
        ),
    );
    let run = paused(&sb);
    // The starter may not approve their own run, even when listed.
    sb.cairn(&["approve", &run, "gate"])
        .expect(2)
        .says("started this run and may not approve it");
    // `--by` is a comment, never the identity.
    as_user(&sb, ALICE, &["approve", &run, "gate", "--by", BOB])
        .expect(0)
        .says(&format!("as {ALICE}"))
        .says("1 of 2 approvals");
    as_user(&sb, ALICE, &["approve", &run, "gate"])
        .expect(2)
        .says("already answered");
    // Not paused enough: the run waits again.
    sb.resume(&run, &[]).expect(3);
    assert!(!sb.exists("log.txt"));
    // BOB answers through his group, given through sudo's SUDO_USER as root would.
    let mut by_sudo = sb.command(&["approve", &run, "gate", "-m", "checked the dump"]);
    by_sudo.env("SUDO_USER", BOB);
    finish(by_sudo).expect(0).says(&format!("as {BOB}"));
    let (junit, report) = (sb.file("junit.xml"), sb.file("report.md"));
    sb.resume(&run, &["--junit", &junit, "--report", &report])
        .expect(0);
    assert_eq!(sb.lines("log.txt"), ["ACTED"]);
    // The reports carry every answer: who, where, when and why.
    let junit = sb.read("junit.xml");
    assert!(
        junit.contains(&format!(
            "<property name=\"approval\" value=\"gate approved by {BOB} on "
        )) && junit.contains(": checked the dump\"/>"),
        "{junit}"
    );
    let report = sb.read("report.md");
    assert!(
        report.contains(&format!("- gate approved by {ALICE} on ")),
        "{report}"
    );
    let shown = sb.show(&run);
    let answers = shown["approvals"].as_array().expect("approvals");
    let who: Vec<&str> = answers.iter().filter_map(|a| a["by"].as_str()).collect();
    assert_eq!(who, [ALICE, BOB], "{shown:#}");
    assert_eq!(answers[0]["comment"], BOB, "--by is kept as a comment");
    assert_eq!(answers[1]["comment"], "checked the dump");
    assert!(answers.iter().all(|a| a["host"].is_string()));
    let gate = sb.step(&run, "gate");
    assert_eq!(gate["result"]["approved_by"], format!("{ALICE}, {BOB}"));
}

#[test]
fn a_non_approver_is_refused_and_may_not_say_no_either() {
    users();
    let schema = PgSchema::new("gate_outsider");
    let sb = Sandbox::with_state(&schema.url());
    book(
        &sb,
        "",
        &format!("  - id: gate\n    approval: {{ message: Go?, approvers: [{ALICE}] }}\n"),
    );
    let run = paused(&sb);
    as_user(&sb, BOB, &["approve", &run, "gate"])
        .expect(2)
        .says(&format!("{BOB} may not answer this gate"));
    as_user(&sb, BOB, &["reject", &run, "gate"]).expect(2);
    assert_eq!(sb.show(&run)["approvals"].as_array().map(Vec::len), Some(0));
    // The starter may always decline their own change.
    sb.cairn(&["reject", &run, "gate"]).expect(0);
}

#[test]
fn auto_approve_does_not_answer_a_gate_with_rules() {
    let sb = Sandbox::new();
    book(
        &sb,
        "",
        "  - id: open
    approval: Go?
  - id: guarded
    needs: [open]
    approval: { message: Really?, min_approvals: 2 }
",
    );
    let out = sb.run("rb.yaml", &["--auto-approve"]);
    out.expect(3);
    let run = out.run_id();
    assert_eq!(sb.step(&run, "open")["status"], "succeeded");
    assert_eq!(sb.step(&run, "guarded")["status"], "waiting");
}

/// A run prompting on a terminal (a real pty) is answered from another shell: it notices
/// within a second and goes on.
#[test]
fn a_prompting_run_is_answered_from_another_shell() {
    users();
    let schema = PgSchema::new("gate_prompt");
    let sb = Sandbox::with_state(&schema.url());
    book(
        &sb,
        "",
        "  - id: gate
    approval: Restart now?
  - id: act
    needs: [gate]
    shell: echo ACTED >> LOG
",
    );
    // python's pty gives the run a terminal on stdin and stderr; our stdin stays closed, so
    // nothing is typed at the prompt.
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)",
            env!("CARGO_BIN_EXE_cairn"),
            "run",
            "rb.yaml",
            "--state",
            sb.state(),
        ])
        .current_dir(sb.path())
        .env("NO_COLOR", "1")
        .env("TERM", "dumb")
        .env_remove("CAIRN_STATE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = String::new();
    let clock = Instant::now();
    while !seen.contains("approve? [y/n]") {
        assert!(
            clock.elapsed() < Duration::from_secs(30),
            "no prompt: {seen}"
        );
        let mut line = String::new();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("the run ended before prompting: {seen}");
        }
        seen.push_str(&line);
    }
    assert!(seen.contains("cairn approve"), "{seen}");
    let run = sb.runs(&[])[0]["id"].as_str().expect("id").to_string();
    // Recorded `waiting` while it prompts, so another shell can answer.
    assert_eq!(sb.step(&run, "gate")["status"], "waiting");
    let answered = Instant::now();
    as_user(&sb, ALICE, &["approve", &run, "gate"]).expect(0);
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{seen}{rest}");
    assert!(
        answered.elapsed() < Duration::from_secs(10),
        "the prompting run took {:?} to notice",
        answered.elapsed()
    );
    assert_eq!(sb.lines("log.txt"), ["ACTED"]);
    assert_eq!(
        sb.step(&run, "gate")["result"]["approved_by"],
        ALICE,
        "{seen}{rest}"
    );
}

#[test]
fn a_gate_answered_during_a_pause_waits_for_a_step_above_it_that_runs_again() {
    users();
    let schema = PgSchema::new("gate_rerun_above");
    let sb = Sandbox::with_state(&schema.url());
    book(
        &sb,
        "",
        "  - id: pick
    shell: echo pick-start >> LOG; sleep 1; echo pick-end >> LOG
  - id: gate
    needs: [pick]
    approval: Go?
  - id: act
    needs: [gate]
    shell: echo act >> LOG
",
    );
    let run = paused(&sb);
    as_user(&sb, ALICE, &["approve", &run, "gate"]).expect(0);
    // The gate is decided by the answer given during the pause, so its outcome is known before
    // the attempt starts; what needs it still starts only after the step above it, run again
    // here, has ended.
    sb.resume(&run, &["--rerun", "pick"]).expect(0);
    assert_eq!(
        sb.lines("log.txt"),
        ["pick-start", "pick-end", "pick-start", "pick-end", "act"]
    );
}

#[test]
fn a_no_above_a_step_decides_before_another_gate_above_it_that_still_waits() {
    users();
    let schema = PgSchema::new("gate_no_first");
    let sb = Sandbox::with_state(&schema.url());
    book(
        &sb,
        "",
        "  - id: later
    needs: []
    approval: Later?
  - id: skip_me
    needs: []
    approval: { message: Skip?, on_reject: skip }
  - id: act
    needs: [later, skip_me]
    shell: echo ACTED >> LOG
",
    );
    let run = paused(&sb);
    as_user(&sb, ALICE, &["reject", &run, "skip_me"]).expect(0);
    // `later` still waits, but the "no" above `act` already decides it: it will never run,
    // so it is not left pending for after the other answer.
    sb.resume(&run, &[]).expect(3);
    let act = |shown: &serde_json::Value| {
        shown["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["step_id"] == "act"))
            .cloned()
            .unwrap_or_else(|| panic!("act has no record yet: {shown}"))
    };
    let now = act(&sb.show(&run));
    assert_eq!(now["status"], "skipped", "{now}");
    as_user(&sb, ALICE, &["approve", &run, "later"]).expect(0);
    sb.resume(&run, &[]).expect(0);
    assert!(sb.lines("log.txt").is_empty(), "{:?}", sb.lines("log.txt"));
    assert_eq!(act(&sb.show(&run))["status"], "skipped");
}

#[test]
fn a_step_asked_to_run_again_is_not_passed_off_as_done_after_a_pause_above_it() {
    users();
    let schema = PgSchema::new("gate_from_forgets");
    let sb = Sandbox::with_state(&schema.url());
    book(
        &sb,
        "",
        "  - id: gate
    approval: Go?
  - id: act
    needs: [gate]
    shell: echo ACTED >> LOG
",
    );
    let run = paused(&sb);
    as_user(&sb, ALICE, &["approve", &run, "gate"]).expect(0);
    sb.resume(&run, &[]).expect(0);
    assert_eq!(sb.lines("log.txt"), ["ACTED"]);
    // Asked again from the gate: it waits, and `act` below it, asked to run again too, must
    // not keep its old success through the pause.
    sb.resume(&run, &["--from", "gate"]).expect(3);
    as_user(&sb, ALICE, &["approve", &run, "gate"]).expect(0);
    sb.resume(&run, &[]).expect(0);
    assert_eq!(sb.lines("log.txt"), ["ACTED", "ACTED"]);
}
