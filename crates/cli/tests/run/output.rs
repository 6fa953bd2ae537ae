//! Text mode: the run id is stdout's first line (and stdout holds nothing else); progress and
//! the summary go to stderr.

use super::common::Sandbox;
use std::process::Command;

#[test]
fn text_mode_prints_the_run_id_first_and_progress_on_stderr() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        r#"
cairn: 1
name: text
steps:
  - id: hello
    shell: echo hello from the step
"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(["run", "runbook.yaml", "--state"])
        .arg(sb.path().join("state.db"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run cairn");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout}");
    let id = lines[0];
    assert_eq!(id.len(), 26, "a ULID: {id}");
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
    assert!(stderr.contains("running text: 1 steps"), "{stderr}");
    assert!(stderr.contains("✓ hello succeeded"), "{stderr}");
    assert!(
        stderr.contains(&format!("run {id} succeeded in ")),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "no colour without a TTY: {stderr}"
    );
    // The step's own output is captured, not printed.
    assert!(!stdout.contains("hello from the step"));
    // The per-step log beside the state holds it.
    let log = sb.read(&format!("logs/{id}/hello.log"));
    assert!(log.contains("hello from the step"), "{log}");
}
