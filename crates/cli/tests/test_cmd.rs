//! `cairn test` end to end: the real binary on test files written into a temp dir (and on the
//! shipped runbooks' own), with real processes for the steps that run for real, the JUnit
//! checked by xmllint against the published schema (`.ci/consumers.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (exit code, stdout with timings blanked, stderr).
fn cairn(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_STATE")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn");
    let stdout = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(blank_times)
        .collect::<Vec<_>>()
        .join("\n");
    (
        out.status.code().unwrap_or(-1),
        stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `(12 ms)` -> `(N ms)`, `(0.03 s)` -> `(N s)`.
fn blank_times(line: &str) -> String {
    let mut s = line.to_string();
    for unit in [" ms)", " s)"] {
        if let Some(end) = s.rfind(unit)
            && let Some(start) = s[..end].rfind('(')
        {
            s.replace_range(start + 1..end, "N");
        }
    }
    s
}

/// A restart runbook: a probe, a real readonly process, a gate behind a `when`, a restart that
/// changes things only when the probe says the service is down, a report in `finally`.
const RUNBOOK: &str = r#"cairn: 1
name: restart
inputs:
  force: { type: bool, default: false }
steps:
  - id: probe
    readonly: true
    http: { get: "http://127.0.0.1:9/health" }
    expect: { status: [200, 503] }
    outputs: { status: "{{ result.status }}" }
  - id: hello
    needs: []
    readonly: true
    shell: echo hello-from-a-real-process
    outputs: { said: "{{ result.stdout | trim }}" }
  - id: confirm
    needs: [probe, hello]
    when: (steps.probe.outputs.status | int) != 200 or inputs.force
    approval: { message: "restart?", on_reject: fail }
  - id: restart
    needs: [confirm]
    when: steps.confirm.status == 'succeeded'
    shell: systemctl restart memory-service
    retry: { attempts: 2, delay: 30s }
finally:
  - id: summary
    report: { inline: "restart {{ steps.restart.status }}", to: /nonexistent/cairn-test/summary.md }
outputs:
  said: "{{ steps.hello.outputs.said }}"
"#;

fn sandbox(test_file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("restart.yaml"), RUNBOOK).expect("write runbook");
    std::fs::write(dir.path().join("restart.test.yaml"), test_file).expect("write test file");
    dir
}

const PASSING: &str = r#"cairn-test: 1
runbook: restart.yaml
cases:
  - name: a down service is restarted once approved
    fixtures:
      probe: { result: { status: 503 } }
      confirm: { approve: true, by: alice }
      restart: { attempts: [{ fail: "unit busy" }, { result: { exit_code: 0 } }] }
    expect:
      status: succeeded
      ran: [probe, hello, confirm, restart, summary]
      steps.restart.status: succeeded
      outputs.said: hello-from-a-real-process
  - name: a rejected restart restarts nothing
    fixtures:
      probe: { result: { status: 503 } }
      confirm: { approve: false, by: bob }
    expect:
      status: failed
      error: rejected by bob
      not_ran: [restart]
      ran: [summary]
  - name: a healthy service needs nothing, twice
    fixtures:
      probe: { result: { status: 200 } }
    expect:
      status: succeeded
      not_ran: [confirm, restart]
      idempotent: true
  - name: a restart converges, so the second run has nothing to do
    fixtures:
      probe: { result: { status: 503 }, again: { result: { status: 200 } } }
      confirm: { approve: true }
      restart: { result: {} }
    expect: { status: succeeded, ran: [restart], idempotent: true }
"#;

#[test]
fn passing_cases_pass_through_the_engine() {
    let dir = sandbox(PASSING);
    let (code, out, err) = cairn(dir.path(), &["test", "restart.test.yaml", "--coverage"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        out,
        "ok   restart.test.yaml: a down service is restarted once approved (N ms)
ok   restart.test.yaml: a rejected restart restarts nothing (N ms)
ok   restart.test.yaml: a healthy service needs nothing, twice (N ms)
ok   restart.test.yaml: a restart converges, so the second run has nothing to do (N ms)
4 cases in 1 file: 4 passed, 0 failed (N s)

coverage:
  restart: steps 5/5, branches 6/6 (when true/false, gate approved/rejected)"
    );
    // The report was rendered by the engine into the case's own folder, not at its `to`.
    assert!(!Path::new("/nonexistent/cairn-test").exists());
}

#[test]
fn a_case_that_should_fail_fails_with_its_first_difference() {
    let dir = sandbox(
        r#"cairn-test: 1
runbook: restart.yaml
cases:
  - name: claims a rejection succeeds
    fixtures:
      probe: { result: { status: 503 } }
      confirm: { approve: false, by: bob }
    expect:
      status: succeeded
  - name: wrong output
    fixtures:
      probe: { result: { status: 200 } }
    expect:
      steps.probe.outputs.status: 503
  - name: forgets a fixture
    inputs: { force: true }
    fixtures:
      probe: { result: { status: 200 } }
      confirm: { approve: true }
    expect:
      status: succeeded
  - name: a restart that changes things again is not idempotent
    fixtures:
      probe: { result: { status: 503 } }
      confirm: { approve: true }
      restart: { result: {} }
    expect:
      idempotent: true
"#,
    );
    let (code, out, err) = cairn(dir.path(), &["test", "."]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(
        out,
        "FAIL ./restart.test.yaml: claims a rejection succeeds (N ms)
     status
       expected: succeeded
       actual:   failed (step `confirm`: rejected by bob)
FAIL ./restart.test.yaml: wrong output (N ms)
     steps.probe.outputs.status
       expected: 503
       actual:   200
FAIL ./restart.test.yaml: forgets a fixture (N ms)
     step restart has no fixture (give it `result:` or `fail:`, mark it `readonly: true`, or set `live: true` on the case)
FAIL ./restart.test.yaml: a restart that changes things again is not idempotent (N ms)
     idempotent: step `restart` in the second run
       expected: nothing to change (skipped by its `when`, or not reached)
       actual:   it ran (succeeded)
4 cases in 1 file: 0 passed, 4 failed (N s)"
    );
}

#[test]
fn an_unknown_step_is_a_located_error_with_did_you_mean() {
    let dir = sandbox(
        "cairn-test: 1\nrunbook: restart.yaml\ncases:\n  - name: a\n    fixtures:\n      restrat: { result: {} }\n",
    );
    let (code, out, err) = cairn(dir.path(), &["test", "restart.test.yaml"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert_eq!(
        err,
        "error: `restart` has no step `restrat`
 --> restart.test.yaml:6:7
  |
6 |       restrat: { result: {} }
  |       ^^^^^^^
  = help: did you mean `restart`?

x restart.test.yaml: invalid test file
"
    );
}

#[test]
fn a_fixture_of_the_wrong_shape_is_refused_at_its_line() {
    let dir = sandbox(
        "cairn-test: 1\nrunbook: restart.yaml\ncases:\n  - name: a\n    fixtures:\n      probe: { result: { code: 200 } }\n      confirm: { result: { exit_code: 0 } }\n",
    );
    let (code, out, err) = cairn(dir.path(), &["test", "restart.test.yaml"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert_eq!(
        err,
        "error: a `http` result has no `code`
 --> restart.test.yaml:6:26
  |
6 |       probe: { result: { code: 200 } }
  |                          ^^^^
  = help: a `http` result has: status, headers, body, body_truncated, json, url, duration_ms

error: step `confirm` is a gate: its fixture is an answer
 --> restart.test.yaml:7:7
  |
7 |       confirm: { result: { exit_code: 0 } }
  |       ^^^^^^^
  = help: write `approve: true` or `approve: false` (and `by: NAME`)

x restart.test.yaml: invalid test file
"
    );
}

#[test]
fn filter_runs_only_matching_cases_and_junit_is_valid() {
    let dir = sandbox(PASSING);
    let (code, out, err) = cairn(
        dir.path(),
        &["test", ".", "--filter", "rejected", "--junit", "junit.xml"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("ok   ./restart.test.yaml: a rejected restart restarts nothing"));
    assert!(
        out.ends_with("1 case in 1 file: 1 passed, 0 failed (N s)"),
        "{out}"
    );
    xmllint(&dir.path().join("junit.xml"));
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).expect("junit");
    assert!(xml.contains(
        "<testcase name=\"a rejected restart restarts nothing\" classname=\"restart.test\""
    ));
}

#[test]
fn a_failing_case_is_a_junit_failure() {
    let dir = sandbox(
        "cairn-test: 1\nrunbook: restart.yaml\ncases:\n  - name: wrong\n    fixtures:\n      probe: { result: { status: 200 } }\n    expect: { status: failed }\n",
    );
    let (code, _, _) = cairn(dir.path(), &["test", ".", "--junit", "junit.xml"]);
    assert_eq!(code, 1);
    xmllint(&dir.path().join("junit.xml"));
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).expect("junit");
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(xml.contains("<failure message=\"status\" type=\"difference\">status\n  expected: failed\n  actual:   succeeded</failure>"), "{xml}");
}

fn xmllint(file: &Path) {
    let schema = repo().join("tests/consumers/JUnit.xsd");
    let out = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&schema)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("xmllint is needed to check JUnit ({e}): run .ci/consumers.sh"));
    assert!(
        out.status.success(),
        "xmllint refused {}:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nested_fixtures_reach_the_sub_run() {
    let dir = sandbox(PASSING);
    std::fs::write(
        dir.path().join("parent.yaml"),
        "cairn: 1\nname: parent\nsteps:\n  - id: child\n    uses: restart.yaml\n    with: { force: true }\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("parent.test.yaml"),
        r#"cairn-test: 1
runbook: parent.yaml
cases:
  - name: the child's gate is answered by the parent's case
    fixtures:
      child:
        fixtures:
          probe: { result: { status: 200 } }
          confirm: { approve: false, by: dana }
    expect:
      status: failed
      steps.child.error: rejected by dana
  - name: the child's missing fixture is named with its path
    fixtures:
      child:
        fixtures:
          probe: { result: { status: 200 } }
          confirm: { approve: true }
  - name: a sub-run given whole
    fixtures:
      child: { result: { said: hi } }
    expect:
      steps.child.result.said: hi
"#,
    )
    .expect("write");
    let (code, out, err) = cairn(dir.path(), &["test", "parent.test.yaml"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(
        out,
        "ok   parent.test.yaml: the child's gate is answered by the parent's case (N ms)
FAIL parent.test.yaml: the child's missing fixture is named with its path (N ms)
     step child/restart has no fixture (give it `result:` or `fail:`, mark it `readonly: true`, or set `live: true` on the case)
ok   parent.test.yaml: a sub-run given whole (N ms)
3 cases in 1 file: 2 passed, 1 failed (N s)"
    );
}

#[test]
fn the_shipped_runbooks_pass_their_tests() {
    let (code, out, err) = cairn(&repo(), &["test", "runbooks/"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn the_test_schema_is_printed() {
    let (code, out, _) = cairn(&repo(), &["schema", "--test"]);
    assert_eq!(code, 0);
    let committed =
        std::fs::read_to_string(repo().join("schemas/runbook-test.schema.json")).expect("schema");
    assert_eq!(out, committed.trim_end());
}

#[test]
fn validate_passes_over_test_files_in_a_folder() {
    let dir = sandbox(PASSING);
    let (code, _, err) = cairn(dir.path(), &["validate", "."]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("√ ./restart.yaml") && !err.contains("restart.test.yaml"),
        "{err}"
    );
}
