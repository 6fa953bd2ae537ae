//! Approvals: without a TTY (tests have none) the run pauses, exit 3; `--auto-approve`
//! answers as `auto:<user>`.

use super::common::Sandbox;

const GATED: &str = r#"
cairn: 1
name: gated
steps:
  - id: before
    shell: touch before
  - id: confirm
    approval: "Point DNS at {{ inputs.site }}, then approve."
    outputs: { by: "{{ result.approved_by }}", approved: "{{ result.approved }}" }
  - id: after
    shell: touch after
  - id: beside
    needs: []
    shell: touch beside
outputs:
  by: "{{ steps.confirm.outputs.by }}"
inputs:
  site: { default: dr-site }
"#;

#[test]
fn without_a_tty_the_run_pauses_with_exit_3() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(GATED, &[]);
    run.expect_code(3);
    assert_eq!(run.outcome(), "paused");
    assert_eq!(run.status("confirm"), "waiting");
    let waiting = run.all("approval_waiting", "confirm");
    assert_eq!(waiting.len(), 1, "{run}");
    assert_eq!(waiting[0]["message"], "Point DNS at dr-site, then approve.");
    assert!(sb.exists("before"));
    // What follows the gate waits for it; other branches do not.
    assert!(!run.started("after"));
    assert!(!sb.exists("after"));
    assert_eq!(run.summary("after")["status"], "pending");
    assert!(sb.exists("beside"));
    assert_eq!(run.outputs(), &serde_json::Value::Null);
}

#[test]
fn auto_approve_answers_as_auto_user_whatever_user_says() {
    let sb = Sandbox::new();
    sb.write("runbook.yaml", GATED);
    let mut cmd = sb.command("runbook.yaml", &["--auto-approve"]);
    // `$USER` is whatever the caller sets: the identity is the uid's.
    cmd.env("USER", "drill-bot");
    let run = sb.run_with(cmd);
    run.expect_code(0);
    assert_eq!(run.outcome(), "succeeded");
    assert_eq!(run.status("confirm"), "succeeded");
    let by = format!("auto:{}", super::common::whoami());
    assert_eq!(run.finished("confirm")["note"], format!("approved by {by}"));
    assert_eq!(run.outputs()["by"], by.as_str());
    assert!(run.all("approval_waiting", "confirm").is_empty());
    assert!(sb.exists("after"));
}
