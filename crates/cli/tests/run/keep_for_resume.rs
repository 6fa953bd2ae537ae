//! `finally` steps with `keep_for_resume: true` are held back while the run has failed, so that
//! a plain resume after a fix still finds the scratch data they remove; they run in the attempt
//! that ends the run succeeded. Ordinary `finally` steps run at the end of every attempt.

use super::common::{Run, Sandbox};
use std::process::Command;

const RUNBOOK: &str = r#"
cairn: 1
name: scratch
steps:
  - id: create_scratch
    shell: mkdir scratch && echo rows > scratch/data
  - id: load
    # Fails until the fix (the file `fixed`) is there; needs the scratch data.
    shell: test -e fixed && cat scratch/data
  - id: verify
    shell: test -s scratch/data
finally:
  - id: note_attempt
    shell: echo attempt >> attempts
  - id: drop_scratch
    keep_for_resume: true
    shell: rm -r scratch
"#;

fn resume(sb: &Sandbox, run_id: &str) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.current_dir(sb.path())
        .args(["resume", run_id, "--log-format", "json", "--state"])
        .arg(sb.path().join("state.db"))
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_STATE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    sb.run_with(c)
}

#[test]
fn the_scratch_data_survives_a_failed_attempt_and_goes_when_the_run_succeeds() {
    let sb = Sandbox::new();
    let first = sb.run_yaml(RUNBOOK, &[]);
    first.expect_code(1);
    assert_eq!(first.status("load"), "failed", "{first}");
    // The ordinary `finally` step ran; the one that drops the scratch data was held back.
    assert_eq!(first.status("note_attempt"), "succeeded");
    assert_eq!(first.status("drop_scratch"), "skipped");
    assert_eq!(
        first.finished("drop_scratch")["note"],
        "kept for a resume (step `load` failed): runs when the run succeeds"
    );
    assert!(sb.exists("scratch/data"), "the scratch data is gone");
    // The plan says so too.
    let plan = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(["plan", "runbook.yaml"])
        .env("NO_COLOR", "1")
        .output()
        .expect("cairn plan");
    assert!(
        String::from_utf8_lossy(&plan.stdout)
            .contains("kept for a resume (runs when the run succeeds)"),
        "{plan:?}"
    );
    let id = first.run_finished()["run_id"]
        .as_str()
        .expect("id")
        .to_string();

    // The fix, then a plain resume: `create_scratch` succeeded and is not run again, and
    // `load` finds its data.
    sb.write("fixed", "");
    let second = resume(&sb, &id);
    second.expect_code(0);
    assert!(!second.started("create_scratch"), "{second}");
    assert_eq!(second.status("load"), "succeeded", "{second}");
    assert_eq!(second.status("drop_scratch"), "succeeded", "{second}");
    assert!(!sb.exists("scratch"), "the scratch data outlived the run");
    assert_eq!(sb.read("attempts"), "attempt\nattempt\n");
}

#[test]
fn a_failing_finally_step_before_it_holds_it_back_too() {
    let sb = Sandbox::new();
    // A `finally` step before it fails the run: the cleanup waits.
    let run = sb.run_yaml(
        &RUNBOOK
            .replace("test -e fixed && ", "")
            .replace("echo attempt >> attempts", "exit 1"),
        &[],
    );
    run.expect_code(1);
    assert_eq!(run.status("drop_scratch"), "skipped", "{run}");
    assert_eq!(
        run.finished("drop_scratch")["note"],
        "kept for a resume (step `note_attempt` failed): runs when the run succeeds"
    );
    assert!(sb.exists("scratch/data"));
}

#[test]
fn keep_for_resume_is_only_for_finally_steps() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        "cairn: 1\nname: k\nsteps:\n  - id: a\n    shell: 'true'\n    keep_for_resume: true\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(["validate", "runbook.yaml"])
        .env("NO_COLOR", "1")
        .output()
        .expect("cairn validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("step `a`: `keep_for_resume` is only for `finally` steps")
            && err.contains("runbook.yaml:6:22"),
        "{err}"
    );
}
