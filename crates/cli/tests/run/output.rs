//! Text mode: the run id is stdout's first line (and stdout holds nothing else); progress and
//! the summary go to stderr.

use super::common::Sandbox;
use std::process::Command;

/// `cairn run runbook.yaml` in the sandbox, with its state beside it and no colour.
fn run_runbook(sb: &Sandbox) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(["run", "runbook.yaml", "--state"])
        .arg(sb.path().join("state.db"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run cairn")
}

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
    let out = run_runbook(&sb);
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

/// A step that printed nothing has no log file, and `show --step` no log line; an attempt that
/// printed and failed leaves no log behind once a silent retry succeeds, so its output is never
/// taken for the successful attempt's.
#[test]
fn a_silent_step_has_no_log_and_a_silent_retry_removes_the_failed_attempts() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        r#"
cairn: 1
name: quiet
steps:
  - id: quiet
    argv: [/bin/true]
  - id: flaky
    shell: "if [ -e tried ]; then exit 0; fi; touch tried; echo first try; exit 1"
    retry: { attempts: 2, delay: 10ms }
"#,
    );
    let out = run_runbook(&sb);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let id = String::from_utf8(out.stdout).expect("utf-8");
    let id = id.trim();
    let logs = sb.path().join(format!("logs/{id}"));
    for step in ["quiet", "flaky"] {
        assert!(
            !logs.join(format!("{step}.log")).exists(),
            "{step}.log should not exist"
        );
    }
    let show = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(["show", id, "--step", "flaky", "--state"])
        .arg(sb.path().join("state.db"))
        .output()
        .expect("cairn show");
    let text = String::from_utf8_lossy(&show.stdout);
    assert_eq!(show.status.code(), Some(0), "{text}");
    assert!(text.contains("succeeded"), "{text}");
    assert!(
        !text.contains("log"),
        "no log line for a silent step: {text}"
    );
    assert!(!text.contains("first try"), "{text}");
}

/// An escape sequence (OSC retitle, screen clear, cursor moves) in a step's output or a value
/// reaches no terminal output raw: not the progress, not the error lines, not `cairn show`,
/// `cairn runs` or `cairn show --step`, not `cairn plan`, not `cairn validate`'s diagnostics.
#[test]
fn escape_sequences_from_steps_values_and_files_never_reach_the_terminal_raw() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        r#"
cairn: 1
name: "esc"
inputs:
  v: { type: string, default: "x" }
steps:
  - id: loud
    shell: printf '\033]0;pwned\007\033[2J%s\n' {{ inputs.v }} >&2; exit 3
"#,
    );
    let value = "v=\u{1b}]0;title\u{7}\u{1b}[2Jvalue";
    let mut outputs = Vec::new();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(["run", "runbook.yaml", "--set", value, "--state"])
        .arg(sb.path().join("state.db"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run cairn");
    assert_eq!(out.status.code(), Some(1));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains(r"\u{1b}]0;pwned"), "{stderr}");
    outputs.push(("run".to_string(), out.stdout, out.stderr));
    let cairn = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .current_dir(sb.path())
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run cairn");
        (args.join(" "), out.stdout, out.stderr)
    };
    let state = sb.path().join("state.db").display().to_string();
    outputs.push(cairn(&["show", &id, "--state", &state]));
    outputs.push(cairn(&["show", &id, "--step", "loud", "--state", &state]));
    outputs.push(cairn(&["runs", "--state", &state]));
    outputs.push(cairn(&["plan", "runbook.yaml", "--set", value]));
    // A resume of a failed run whose rendering fails quotes the value in its error.
    sb.write(
        "bad.yaml",
        "cairn: 1\nname: bad\nsteps:\n  - id: a\n    shell: echo {{ inputs.nope \u{1b}]0;x\u{7} }}\n",
    );
    outputs.push(cairn(&["validate", "bad.yaml"]));
    sb.write(
        "key.yaml",
        "cairn: 1\nname: key\nstepz: \"\u{1b}]0;owned\u{7}\u{1b}[2J\"\nsteps: []\n",
    );
    outputs.push(cairn(&["validate", "key.yaml"]));
    for (what, stdout, stderr) in &outputs {
        for (stream, bytes) in [("stdout", stdout), ("stderr", stderr)] {
            assert!(
                !bytes.contains(&0x1b) && !bytes.contains(&0x07),
                "{what}: raw control characters on {stream}: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    let shown = String::from_utf8_lossy(&outputs[6].2);
    assert!(shown.contains(r"\u{1b}]0;owned"), "{shown}");
}
