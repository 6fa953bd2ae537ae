//! Timeouts are enforced: the step fails with the timeout, the run does not wait for the
//! action, and nothing it started is left running.

use super::common::{PG_URL, Sandbox, gone_within, pg, unique};
use std::time::{Duration, Instant};

#[test]
fn a_shell_timeout_kills_the_whole_process_group() {
    let sb = Sandbox::new();
    let clock = Instant::now();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: slow
steps:
  - id: slow
    # The sleep is a grandchild of cairn (bash's child), in the step's process group.
    shell: sleep 30 & echo $! > sleep.pid; wait
    timeout: 1s
finally:
  - id: cleanup
    shell: touch cleanup
"#,
        &[],
    );
    let elapsed = clock.elapsed();
    run.expect_code(1);
    let done = run.finished("slow");
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"], "timeout after 1 s", "{run}");
    assert_eq!(done["attempts"], 1);
    // Well under the 30 s of the sleep (generous: a loaded machine).
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    let pid: i32 = sb.read("sleep.pid").trim().parse().expect("a pid");
    assert!(
        gone_within(pid, Duration::from_secs(10)),
        "the grandchild sleep {pid} outlived its step's timeout"
    );
    assert!(sb.exists("cleanup"), "finally ran");
}

#[test]
fn a_sql_timeout_stops_the_query() {
    let marker = unique("nap");
    let sb = Sandbox::new();
    let clock = Instant::now();
    let run = sb.run_yaml(
        &format!(
            r#"
cairn: 1
name: slow-sql
targets:
  db: {{ postgres: "{PG_URL}" }}
steps:
  - id: nap
    sql: {{ target: db, query: "SELECT pg_sleep(60) AS {marker}" }}
    timeout: 1s
"#
        ),
        &[],
    );
    let elapsed = clock.elapsed();
    run.expect_code(1);
    let done = run.finished("nap");
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"], "timeout after 1 s", "{run}");
    // Well under the 60 s of the query (generous: a loaded machine).
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    // ...and the server is not left running it.
    let running = || {
        pg(&format!(
            "SELECT count(*)::text FROM pg_stat_activity \
             WHERE state = 'active' AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
        ))[0][0]
            .clone()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while running().as_deref() != Some("0") {
        assert!(
            Instant::now() < deadline,
            "the query still runs on the server"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_timeout_applies_to_each_attempt() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: slow-retry
defaults: { timeout: 300ms }
steps:
  - id: slow
    shell: echo x >> attempts; sleep 20
    retry: { attempts: 2, delay: 10ms }
"#,
        &[],
    );
    run.expect_code(1);
    let done = run.finished("slow");
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["error"], "timeout after 0.3 s", "{run}");
    let retry = run.all("step_retrying", "slow");
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0]["error"], "timeout after 0.3 s");
    assert_eq!(sb.read("attempts").lines().count(), 2);
}

/// A step's `timeout` and a `wait`'s durations may be templates, rendered when the step starts
/// (per item in a `for_each`); a value that is not a duration fails the step at its line.
#[test]
fn templated_durations_are_rendered_when_the_step_starts() {
    let sb = Sandbox::new();
    let yaml = r#"
cairn: 1
name: templated
inputs:
  grace: { type: string, default: "1s" }
defaults: { timeout: 1h }
steps:
  - id: slow
    timeout: "{{ inputs.grace }}"
    shell: sleep 30
    on_failure: continue
  - id: per_item
    for_each: ["1s", "20s"]
    timeout: "{{ item }}"
    shell: sleep 3
    on_failure: continue
  - id: settle
    wait: { duration: "{{ inputs.grace }}" }
  - id: poll
    wait:
      shell: test -e never
      until: result.exit_code == 0
      interval: "{{ inputs.grace }}"
      timeout: "{{ inputs.grace }}"
    on_failure: continue
"#;
    let clock = Instant::now();
    let run = sb.run_yaml(yaml, &[]);
    run.expect_code(0);
    assert!(
        clock.elapsed() < Duration::from_secs(20),
        "{:?}",
        clock.elapsed()
    );
    assert_eq!(run.finished("slow")["error"], "timeout after 1 s", "{run}");
    let items: Vec<_> = run
        .all("step_finished", "per_item")
        .into_iter()
        .filter(|e| e.get("item").is_some())
        .map(|e| (e["item"].as_u64(), e["status"].as_str()))
        .collect();
    assert!(items.contains(&(Some(0), Some("failed"))), "{items:?}");
    assert!(items.contains(&(Some(1), Some("succeeded"))), "{items:?}");
    assert_eq!(run.finished("settle")["status"], "succeeded");
    let waited = run.finished("settle")["duration"].as_u64().expect("ms");
    assert!(waited >= 1000, "{waited}");
    assert_eq!(run.finished("poll")["status"], "failed", "{run}");

    let bad = sb.run("runbook.yaml", &["--set", "grace=soon"]);
    bad.expect_code(1);
    assert_eq!(
        bad.finished("slow")["error"],
        "timeout (line 9): `{{ inputs.grace }}` gave `soon`, which is not a duration \
         (expected number at 0): write it like `30s`, `10m` or `1h30m`",
        "{bad}"
    );
    assert!(
        bad.finished("settle")["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("wait.duration (line 18): ")),
        "{bad}"
    );
}
