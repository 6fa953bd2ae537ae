//! `when` decides from an input or from a step's output; false skips the step, with a note.

use super::common::Sandbox;

const WHEN: &str = r#"
cairn: 1
name: when
inputs:
  flag: { type: bool, default: true }
steps:
  - id: gated
    when: inputs.flag
    shell: touch gated
  - id: probe
    shell: echo yes
    outputs: { answer: "{{ result.stdout | trim }}" }
  - id: on_yes
    when: steps.probe.outputs.answer == 'yes'
    shell: touch on_yes
  - id: on_no
    when: "{{ steps.probe.outputs.answer == 'no' }}"
    shell: touch on_no
  - id: last
    shell: touch last
"#;

#[test]
fn an_input_set_to_false_skips_the_step() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(WHEN, &["--set", "flag=false"]);
    run.expect_code(0);
    let gated = run.finished("gated");
    assert_eq!(gated["status"], "skipped");
    assert_eq!(gated["note"], "when inputs.flag is false");
    assert!(!run.started("gated"));
    assert!(!sb.exists("gated"));
    // A skipped step does not stop the steps after it.
    assert!(sb.exists("last"));
}

#[test]
fn the_input_default_runs_the_step() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(WHEN, &[]);
    run.expect_code(0);
    assert_eq!(run.status("gated"), "succeeded");
    assert!(sb.exists("gated"));
}

#[test]
fn a_step_output_decides() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(WHEN, &[]);
    run.expect_code(0);
    assert_eq!(run.status("on_yes"), "succeeded");
    assert!(sb.exists("on_yes"));
    let no = run.finished("on_no");
    assert_eq!(no["status"], "skipped");
    assert_eq!(
        no["note"],
        "when {{ steps.probe.outputs.answer == 'no' }} is false"
    );
    assert!(!sb.exists("on_no"));
    assert_eq!(run.summary("on_no")["status"], "skipped");
    assert_eq!(run.summary("on_no")["attempts"], 0);
}
