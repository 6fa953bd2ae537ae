//! What a resume runs, and in which order: a step never starts before every step it needs has
//! finished in the same attempt; a `for_each` resumes only its items that did not succeed; each
//! `for_each` item of a `uses` step has its own sub-run.

use crate::common::Sandbox;

/// `probe` fails (and the run goes on), the gate pauses, `act` reads `probe`'s status. After
/// the approval, a resume told to run `probe` again runs `act` only once `probe` has finished.
#[test]
fn a_step_waits_for_a_rerun_step_above_a_restored_approval() {
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: probe-gate-act
steps:
  - id: probe
    shell: sleep 0.3; test -e {ok}
    on_failure: continue
  - id: gate
    approval: {{ message: go on?, allow_self_approval: true }}
  - id: act
    shell: echo {{{{ steps.probe.status }}}} >> {act}
",
            ok = sb.file("ok"),
            act = sb.file("act.txt"),
        ),
    );
    let paused = sb.run("rb.yaml", &[]);
    paused.expect(3);
    let run = paused.run_id();
    sb.cairn(&["approve", &run, "gate"]).expect(0);
    sb.write("ok", "");
    let resumed = sb.resume(&run, &["--rerun", "probe"]);
    resumed.expect(0);
    assert_eq!(resumed.started(), ["probe", "act"], "{resumed}");
    assert_eq!(sb.lines("act.txt"), ["succeeded"], "{resumed}");
    // `act` started only after `probe` finished: their events come in that order.
    let events = resumed.events();
    let at = |kind: &str, step: &str| {
        events
            .iter()
            .position(|e| e["event"] == kind && e["step"] == step)
            .unwrap_or_else(|| panic!("no {kind} of {step}: {resumed}"))
    };
    assert!(
        at("step_finished", "probe") < at("step_started", "act"),
        "{resumed}"
    );
}

/// A failure tolerated by `on_failure: continue` is a conclusion: a plain resume keeps it.
/// Asked to run again (`--rerun`), it does, and a succeeded step below it runs again too: its
/// inputs may change.
#[test]
fn a_done_step_below_a_rerun_step_runs_again() {
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: below-rerun
steps:
  - id: probe
    shell: test -e {ok}
    on_failure: continue
  - id: report
    shell: echo {{{{ steps.probe.status }}}} >> {log}
  - id: stop
    shell: test -e {ok}
",
            ok = sb.file("ok"),
            log = sb.file("report.txt"),
        ),
    );
    let run = sb.run("rb.yaml", &[]).expect(1).run_id();
    assert_eq!(sb.lines("report.txt"), ["failed"]);
    sb.write("ok", "");
    let resumed = sb.resume(&run, &[]);
    resumed.expect(0);
    assert_eq!(resumed.started(), ["stop"], "{resumed}");
    assert_eq!(sb.lines("report.txt"), ["failed"]);
    let rerun = sb.resume(&run, &["--rerun", "probe"]);
    rerun.expect(0);
    assert_eq!(rerun.started(), ["probe", "report", "stop"], "{rerun}");
    assert_eq!(sb.lines("report.txt"), ["failed", "succeeded"]);
}

/// ...unless it is not idempotent: then the resume asks, like for a step in doubt.
#[test]
fn a_non_idempotent_done_step_below_a_rerun_step_is_asked_about() {
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: below-rerun-once
steps:
  - id: probe
    shell: test -e {ok}
    on_failure: continue
  - id: restore
    shell: echo restored >> {log}
    idempotent: false
  - id: stop
    shell: test -e {ok}
",
            ok = sb.file("ok"),
            log = sb.file("restore.txt"),
        ),
    );
    let run = sb.run("rb.yaml", &[]).expect(1).run_id();
    sb.write("ok", "");
    sb.resume(&run, &["--rerun", "probe"])
        .expect(2)
        .says("step `restore` is done and not idempotent, but `probe` above it runs again")
        .says("--skip STEP");
    assert_eq!(sb.lines("restore.txt"), ["restored"], "nothing ran");
    let resumed = sb.resume(&run, &["--rerun", "probe", "--skip", "restore"]);
    resumed.expect(0);
    assert_eq!(resumed.started(), ["probe", "stop"], "{resumed}");
    assert_eq!(sb.lines("restore.txt"), ["restored"]);
}

/// 20 items, the last 4 fail: the resume runs those 4 only, and the step's result still lists
/// all 20 in order.
#[test]
fn a_for_each_resumes_only_the_items_that_did_not_succeed() {
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: twenty
steps:
  - id: each
    for_each: \"{{{{ range(20) | list }}}}\"
    shell: echo {{{{ item }}}} >> {log}; test {{{{ item }}}} -lt 16 || test -e {ok}
    outputs: {{ n: \"{{{{ item }}}}\" }}
  - id: after
    shell: echo {{{{ steps.each.outputs.n | join(',') }}}} > {after}
",
            ok = sb.file("ok"),
            log = sb.file("items.txt"),
            after = sb.file("after.txt"),
        ),
    );
    let run = sb.run("rb.yaml", &[]).expect(1).run_id();
    assert_eq!(sb.lines("items.txt").len(), 20);
    sb.write("ok", "");
    let resumed = sb.resume(&run, &[]);
    resumed.expect(0);
    let again: Vec<String> = sb.lines("items.txt")[20..].to_vec();
    assert_eq!(again, ["16", "17", "18", "19"], "{resumed}");
    let all: Vec<String> = (0..20).map(|k| k.to_string()).collect();
    assert_eq!(sb.read("after.txt").trim(), all.join(","));
    assert_eq!(sb.step(&run, "each")["status"], "succeeded");
}

/// Each item of a `for_each` over `uses` has its own sub-run: 2, 3, 4 squared are 4, 9, 16,
/// on the first run and after a resume that continues only the failed item's sub-run.
#[test]
fn each_for_each_item_of_a_uses_step_is_its_own_sub_run() {
    let sb = Sandbox::new();
    sb.write(
        "square.yaml",
        format!(
            "cairn: 1
name: square
inputs:
  n: {{ type: int, required: true }}
steps:
  - id: mul
    argv: [expr, \"{{{{ inputs.n }}}}\", \"*\", \"{{{{ inputs.n }}}}\"]
    outputs: {{ v: \"{{{{ result.stdout | trim | int }}}}\" }}
  - id: gate
    shell: test {{{{ inputs.n }}}} -ne 3 || test -e {ok}
outputs:
  sq: \"{{{{ steps.mul.outputs.v }}}}\"
",
            ok = sb.file("ok"),
        ),
    );
    sb.write(
        "rb.yaml",
        "cairn: 1
name: squares
steps:
  - id: sq
    for_each: [2, 3, 4]
    uses: square.yaml
    with: { n: \"{{ item }}\" }
    outputs: { v: \"{{ result.sq }}\" }
outputs:
  squares: \"{{ steps.sq.outputs.v }}\"
",
    );
    let first = sb.run("rb.yaml", &[]);
    first.expect(1);
    let run = first.run_id();
    let runs = sb.runs(&[]);
    assert_eq!(
        runs.len(),
        4,
        "the parent and one sub-run per item: {runs:#?}"
    );
    sb.write("ok", "");
    let resumed = sb.resume(&run, &[]);
    resumed.expect(0);
    // Items 0 and 2 are done; item 1's sub-run continues from its failed step.
    assert_eq!(resumed.started(), ["sq", "sq/gate"], "{resumed}");
    let items: Vec<_> = resumed
        .events()
        .into_iter()
        .filter(|e| e["event"] == "step_started" && e["step"] == "sq")
        .map(|e| e["item"].clone())
        .collect();
    assert_eq!(items, [serde_json::json!(1)], "{resumed}");
    let parent = sb.runs(&[]).into_iter().find(|r| r["id"] == run.as_str());
    let parent = parent.expect("the parent run");
    assert_eq!(parent["status"], "succeeded");
    assert_eq!(parent["outputs"]["squares"], serde_json::json!([4, 9, 16]));
    assert_eq!(sb.runs(&[]).len(), 4, "no new sub-run");
}

#[test]
fn a_uses_step_below_a_rerun_step_starts_a_new_sub_run_with_the_new_value() {
    let sb = Sandbox::new();
    sb.write(
        "echo.yaml",
        "cairn: 1
name: echo
inputs:
  v: { type: string, required: true }
steps:
  - id: say
    argv: [echo, \"{{ inputs.v }}\"]
    outputs: { said: \"{{ result.stdout | trim }}\" }
outputs:
  said: \"{{ steps.say.outputs.said }}\"
",
    );
    sb.write("value", "first");
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: rerun-uses
steps:
  - id: read
    argv: [cat, {value}]
    outputs: {{ v: \"{{{{ result.stdout | trim }}}}\" }}
  - id: sub
    uses: echo.yaml
    with: {{ v: \"{{{{ steps.read.outputs.v }}}}\" }}
    outputs: {{ said: \"{{{{ result.said }}}}\" }}
  - id: gate
    shell: test -e {ok}
outputs:
  said: \"{{{{ steps.sub.outputs.said }}}}\"
",
            value = sb.file("value"),
            ok = sb.file("ok"),
        ),
    );
    let first = sb.run("rb.yaml", &[]);
    first.expect(1);
    let run = first.run_id();
    // The value changes and `read` runs again: `sub` runs again below it, with the new value.
    sb.write("value", "second");
    sb.write("ok", "");
    let resumed = sb.resume(&run, &["--rerun", "read"]);
    resumed.expect(0);
    let parent = sb.runs(&[]).into_iter().find(|r| r["id"] == run.as_str());
    let parent = parent.expect("the parent run");
    assert_eq!(parent["status"], "succeeded");
    assert_eq!(parent["outputs"]["said"], "second", "{resumed}");
    assert_eq!(
        sb.runs(&[]).len(),
        3,
        "the parent, the old sub-run and a new one"
    );
}
