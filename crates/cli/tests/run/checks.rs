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

/// `cairn` on the sandbox's state, text output.
fn cairn(sb: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(args)
        .arg("--state")
        .arg(sb.path().join("state.db"))
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_STATE")
        .env_remove("CAIRN_WARNINGS_EXIT")
        .output()
        .expect("cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_warning_makes_the_run_succeed_with_warnings_everywhere_it_is_shown() {
    let sb = Sandbox::new();
    let junit = sb.file("junit.xml");
    let report = sb.file("report.md");
    let metrics = sb.file("metrics.prom");
    let run = sb.run_yaml(
        &checks(85, ""),
        &[
            "--junit",
            &junit,
            "--report",
            &report,
            "--metrics-file",
            &metrics,
        ],
    );
    // Exit 0 by default: `fail_on` says a warning does not fail.
    run.expect_code(0);
    let end = run.run_finished();
    assert_eq!(end["outcome"], "succeeded_with_warnings", "{run}");
    assert_eq!(
        end["warnings"],
        serde_json::json!([{"step": "pool", "state": "warning", "value": 85, "unit": "%"}]),
        "{run}"
    );
    let id = end["run_id"].as_str().expect("run id").to_string();

    let (code, out, _) = cairn(&sb, &["runs", "--output", "json"]);
    assert_eq!(code, 0);
    let runs: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(runs[0]["status"], "succeeded", "{out}");
    assert_eq!(runs[0]["outcome"], "succeeded_with_warnings", "{out}");
    assert_eq!(runs[0]["warnings"][0]["step"], "pool", "{out}");
    let (_, out, _) = cairn(&sb, &["runs"]);
    assert!(out.contains("succeeded with warnings"), "{out}");

    let (_, out, _) = cairn(&sb, &["show", &id]);
    assert!(
        out.starts_with(&format!("run {id}  checks  succeeded with warnings\n")),
        "{out}"
    );
    assert!(out.contains("  warnings: pool: warning 85 %\n"), "{out}");
    let (_, out, _) = cairn(&sb, &["show", &id, "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(shown["run"]["outcome"], "succeeded_with_warnings", "{out}");

    let junit = sb.read("junit.xml");
    assert!(
        junit.contains(r#"<property name="outcome" value="succeeded_with_warnings"/>"#),
        "{junit}"
    );
    assert!(junit.contains("succeeded with warnings in"), "{junit}");
    let report = sb.read("report.md");
    assert!(
        report.starts_with("# checks: succeeded with warnings\n"),
        "{report}"
    );
    assert!(
        report.contains("| warnings | pool: warning 85 % |"),
        "{report}"
    );
    let metrics = sb.read("metrics.prom");
    assert!(
        metrics.contains("cairn_run_warnings{runbook=\"checks\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_run_success{runbook=\"checks\"} 1\n"),
        "{metrics}"
    );
}

#[test]
fn warnings_exit_gives_a_run_with_warnings_its_own_code() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(&checks(85, ""), &["--warnings-exit", "5"]);
    run.expect_code(5);
    assert_eq!(run.outcome(), "succeeded_with_warnings");
    // Nothing to warn about: still 0.
    let run = sb.run_yaml(&checks(42, ""), &["--warnings-exit", "5"]);
    run.expect_code(0);
    assert_eq!(run.outcome(), "succeeded");
    assert!(run.run_finished().get("warnings").is_none(), "{run}");
    // A failure stays 1, whatever the option says.
    let run = sb.run_yaml(&checks(97, ""), &["--warnings-exit", "5"]);
    run.expect_code(1);
    // From the environment, for cron wrappers.
    let mut cmd = sb.command("runbook.yaml", &[]);
    cmd.env("CAIRN_WARNINGS_EXIT", "1");
    sb.write("runbook.yaml", checks(85, ", fail_on: never"));
    sb.run_with(cmd).expect_code(1);
    // fail_on: never with a critical value: succeeded, with warnings.
    let run = sb.run_yaml(&checks(99, ", fail_on: never"), &["--warnings-exit", "5"]);
    run.expect_code(5);
}

#[test]
fn warnings_exit_refuses_codes_that_already_mean_something() {
    let sb = Sandbox::new();
    for (n, why) in [
        ("2", "exit code 2 already means an invalid runbook"),
        ("3", "exit code 3 already means a paused run"),
        ("4", "exit code 4 already means an infrastructure failure"),
        ("130", "exit codes above 125 are the shell's"),
        ("x", "`x` is not an exit code"),
    ] {
        let run = sb.run_yaml(&checks(85, ""), &["--warnings-exit", n]);
        run.expect_code(2);
        assert!(run.stderr.contains(why), "{n}: {}", run.stderr);
        assert!(!sb.exists("after"), "{n}: the run went ahead");
    }
}
