//! Retries are counted: attempts, `step_retrying` events, the final status and exit code.

use super::common::Sandbox;

#[test]
fn a_step_that_fails_twice_then_succeeds_takes_three_attempts() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: flaky
steps:
  - id: flaky
    # Fails while the counter is below 2: attempts 1 and 2 fail, attempt 3 succeeds.
    shell: |
      n=$(cat counter 2>/dev/null || echo 0)
      echo $((n + 1)) > counter
      [ "$n" -ge 2 ] || { echo "not yet: $n" >&2; exit 1; }
    retry: { attempts: 3, delay: 50ms }
"#,
        &[],
    );
    run.expect_code(0);
    let done = run.finished("flaky");
    assert_eq!(done["status"], "succeeded", "{run}");
    assert_eq!(done["attempts"], 3, "{run}");
    let retrying = run.all("step_retrying", "flaky");
    assert_eq!(retrying.len(), 2, "{run}");
    assert_eq!(retrying[0]["attempt"], 1);
    assert_eq!(retrying[1]["attempt"], 2);
    assert_eq!(retrying[0]["delay"], 50);
    assert_eq!(retrying[0]["error"], "exit code 1: not yet: 0");
    assert_eq!(retrying[1]["error"], "exit code 1: not yet: 1");
    let started: Vec<_> = run
        .all("step_started", "flaky")
        .iter()
        .map(|e| e["attempt"].clone())
        .collect();
    assert_eq!(started, [1, 2, 3]);
    assert_eq!(sb.read("counter").trim(), "3");
    assert_eq!(run.summary("flaky")["attempts"], 3);
    assert_eq!(run.outcome(), "succeeded");
}

#[test]
fn a_step_that_fails_every_attempt_fails_the_run() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: hopeless
steps:
  - id: hopeless
    shell: echo attempt >> attempts; echo "no route to host" >&2; exit 7
    retry: { attempts: 3, delay: 20ms, backoff: 2.0 }
  - id: after
    shell: touch after
"#,
        &[],
    );
    run.expect_code(1);
    let done = run.finished("hopeless");
    assert_eq!(done["status"], "failed");
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["error"], "exit code 7: no route to host");
    let delays: Vec<_> = run
        .all("step_retrying", "hopeless")
        .iter()
        .map(|e| e["delay"].clone())
        .collect();
    // 20 ms, then doubled.
    assert_eq!(delays, [20, 40]);
    assert_eq!(sb.read("attempts").lines().count(), 3);
    assert_eq!(run.status("after"), "skipped");
    assert!(!sb.exists("after"));
    assert_eq!(run.outcome(), "failed");
}
