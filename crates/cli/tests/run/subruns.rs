//! `uses`: a parent runs a child runbook with `with:` inputs and reads its outputs.

use super::common::Sandbox;

#[test]
fn a_parent_passes_inputs_and_reads_the_child_outputs() {
    let sb = Sandbox::new();
    sb.write(
        "lib/child.yaml",
        r#"
cairn: 1
name: child
inputs:
  n: { type: int, required: true }
  word: { type: string, default: hello }
steps:
  - id: double
    argv: [expr, "{{ inputs.n }}", "*", "2"]
    outputs: { v: "{{ result.stdout | trim | int }}" }
  - id: mark
    shell: echo {{ inputs.word }} > child-ran
outputs:
  doubled: "{{ steps.double.outputs.v }}"
  word: "{{ inputs.word | upper }}"
"#,
    );
    let run = sb.run_yaml(
        r#"
cairn: 1
name: parent
steps:
  - id: sub
    uses: lib/child.yaml
    with: { n: 21, word: "it's here" }
  - id: use
    shell: echo {{ steps.sub.result.doubled }} {{ steps.sub.result.word }} > parent-saw
outputs:
  doubled: "{{ steps.sub.result.doubled }}"
  word: "{{ steps.sub.result.word }}"
"#,
        &[],
    );
    run.expect_code(0);
    assert_eq!(run.status("sub"), "succeeded");
    // The child's steps report under the parent step.
    assert_eq!(run.status("sub/double"), "succeeded");
    assert_eq!(run.status("sub/mark"), "succeeded");
    assert_eq!(run.outputs()["doubled"], 42);
    assert_eq!(run.outputs()["word"], "IT'S HERE");
    assert_eq!(sb.read("parent-saw"), "42 IT'S HERE\n");
    assert_eq!(sb.read("child-ran"), "it's here\n");
    // One run_started and one run_finished: the parent's.
    let count = |kind: &str| run.events.iter().filter(|e| e["event"] == kind).count();
    assert_eq!((count("run_started"), count("run_finished")), (1, 1));
}

#[test]
fn a_failing_child_fails_the_uses_step() {
    let sb = Sandbox::new();
    sb.write(
        "child.yaml",
        r#"
cairn: 1
name: child
steps:
  - id: broken
    shell: echo "no backup found" >&2; exit 2
"#,
    );
    let run = sb.run_yaml(
        r#"
cairn: 1
name: parent
steps:
  - id: sub
    uses: child.yaml
  - id: after
    shell: touch after
"#,
        &[],
    );
    run.expect_code(1);
    let sub = run.finished("sub");
    assert_eq!(sub["status"], "failed");
    let error = sub["error"].as_str().unwrap_or_default();
    assert!(
        error.ends_with("failed: step `broken`: exit code 2: no backup found"),
        "{error}"
    );
    assert!(!sb.exists("after"));
}
