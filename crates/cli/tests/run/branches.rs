//! A failing step stops what depends on it, and only that: other branches finish, `finally`
//! runs, the run fails. `on_failure: continue` records the failure and goes on.

use super::common::Sandbox;

const BRANCHES: &str = r#"
cairn: 1
name: branches
steps:
  - id: boom
    shell: echo "disk full" >&2; exit 1
  - id: after_boom
    # No `needs`: waits for the step written before it.
    shell: touch after_boom
  - id: side
    needs: []
    shell: sleep 0.3; touch side
  - id: side_next
    shell: touch side_next
finally:
  - id: cleanup
    shell: touch cleanup
"#;

#[test]
fn a_failure_stops_its_dependents_but_not_an_independent_branch() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(BRANCHES, &[]);
    run.expect_code(1);
    assert_eq!(run.outcome(), "failed");
    let boom = run.finished("boom");
    assert_eq!(boom["status"], "failed");
    assert_eq!(boom["error"], "exit code 1: disk full");

    let skipped = run.finished("after_boom");
    assert_eq!(skipped["status"], "skipped");
    assert_eq!(skipped["note"], "not run: `boom` failed");
    assert!(!run.started("after_boom"));
    assert!(!sb.exists("after_boom"));

    assert_eq!(run.status("side"), "succeeded");
    assert_eq!(run.status("side_next"), "succeeded");
    assert!(sb.exists("side") && sb.exists("side_next"));

    assert_eq!(run.status("cleanup"), "succeeded");
    assert!(sb.exists("cleanup"));
    // finally runs after the DAG ends: after the slower branch too.
    let pos = |step: &str| {
        run.events
            .iter()
            .position(|e| e["event"] == "step_started" && e["step"] == step)
            .expect("started")
    };
    assert!(pos("cleanup") > pos("side_next"), "{run}");
}

#[test]
fn on_failure_continue_lets_dependents_run_and_the_run_succeed() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: soft
steps:
  - id: optional
    shell: exit 4
    on_failure: continue
  - id: next
    shell: echo {{ steps.optional.status }} > next
"#,
        &[],
    );
    run.expect_code(0);
    assert_eq!(run.outcome(), "succeeded");
    assert_eq!(run.status("optional"), "failed");
    assert_eq!(run.finished("optional")["error"], "exit code 4");
    assert_eq!(run.status("next"), "succeeded");
    assert_eq!(sb.read("next"), "failed\n");
}

#[test]
fn defaults_on_failure_applies_to_every_step() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: soft-defaults
defaults: { on_failure: continue }
steps:
  - id: a
    shell: exit 1
  - id: b
    shell: touch b
"#,
        &[],
    );
    run.expect_code(0);
    assert_eq!(run.status("a"), "failed");
    assert!(sb.exists("b"));
}

/// run.rs: a step skipped because something upstream failed names its parent, even when that
/// parent was itself skipped ("not run: `after_boom` failed"), instead of the step that failed.
#[test]
fn a_transitively_blocked_step_names_the_failed_step() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: chain
steps:
  - id: boom
    shell: exit 1
  - id: second
    shell: "true"
  - id: third
    shell: "true"
"#,
        &[],
    );
    run.expect_code(1);
    assert_eq!(run.finished("second")["note"], "not run: `boom` failed");
    assert_eq!(run.finished("third")["note"], "not run: `boom` failed");
    assert!(run.summary("third").get("error").is_none(), "{run}");
}

/// run.rs: a skipped step (by `when`, or blocked) never gets a `steps.ID` view, so a later
/// step or a `finally` step that reads `steps.ID.status` fails with "undefined value".
#[test]
fn skipped_steps_are_visible_to_later_templates() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: visible
steps:
  - id: maybe
    when: "false"
    shell: "true"
  - id: after
    shell: echo {{ steps.maybe.status }} > after
  - id: boom
    needs: []
    shell: exit 1
  - id: blocked
    needs: [boom]
    shell: "true"
finally:
  - id: report
    shell: echo {{ steps.blocked.status }} {{ steps.boom.status }} > report
"#,
        &[],
    );
    run.expect_code(1);
    assert_eq!(run.status("after"), "succeeded", "{run}");
    assert_eq!(sb.read("after"), "skipped\n");
    assert_eq!(run.status("report"), "succeeded", "{run}");
    assert_eq!(sb.read("report"), "skipped failed\n");
}
