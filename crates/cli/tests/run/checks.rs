//! `check`: a critical value fails the step, a warning does not unless `fail_on: warning`.

use super::common::Sandbox;

fn checks(value: u32, fail_on: &str) -> String {
    format!(
        r#"
cairn: 1
name: checks
steps:
  - id: measure
    shell: echo {value}
    outputs: {{ pct: "{{{{ result.stdout | trim | int }}}}" }}
  - id: pool
    check: {{ value: "{{{{ steps.measure.outputs.pct }}}}", warning: "> 80", critical: "> 95", unit: "%"{fail_on} }}
  - id: after
    shell: touch after
"#
    )
}

#[test]
fn ok_passes() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(&checks(42, ""), &[]);
    run.expect_code(0);
    assert_eq!(run.status("pool"), "succeeded");
    assert_eq!(run.finished("pool")["note"], "ok: 42 %");
    assert_eq!(run.summary("pool")["state"], "ok");
}

#[test]
fn a_warning_does_not_fail_the_step() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(&checks(85, ""), &[]);
    run.expect_code(0);
    assert_eq!(run.status("pool"), "succeeded");
    assert_eq!(run.finished("pool")["note"], "warning: 85 %");
    assert_eq!(run.summary("pool")["state"], "warning");
    assert!(sb.exists("after"));
}

#[test]
fn critical_fails_the_step_and_the_run() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(&checks(97, ""), &[]);
    run.expect_code(1);
    let pool = run.finished("pool");
    assert_eq!(pool["status"], "failed");
    assert_eq!(pool["error"], "check critical: 97 % (> 95)");
    assert_eq!(run.summary("pool")["state"], "critical");
    assert_eq!(run.status("after"), "skipped");
    assert!(!sb.exists("after"));
}

#[test]
fn fail_on_warning_fails_on_a_warning() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(&checks(85, ", fail_on: warning"), &[]);
    run.expect_code(1);
    let pool = run.finished("pool");
    assert_eq!(pool["status"], "failed");
    assert_eq!(pool["error"], "check warning: 85 % (> 80)");
    assert_eq!(run.summary("pool")["state"], "warning");
}

#[test]
fn fail_on_never_passes_a_critical_value() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(&checks(99, ", fail_on: never"), &[]);
    run.expect_code(0);
    assert_eq!(run.summary("pool")["state"], "critical");
    assert_eq!(run.status("pool"), "succeeded");
}
