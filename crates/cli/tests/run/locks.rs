//! `lock:`: while one run holds the lock, another run of it is refused before anything runs;
//! once the holder ends, the lock is free again.

use super::common::{Live, Sandbox, wait_or_kill};
use std::time::Duration;

#[test]
fn a_held_lock_refuses_a_second_run() {
    let sb = Sandbox::new();
    let lock = super::common::unique("cairn-test-lock");
    sb.write(
        "runbook.yaml",
        format!(
            r#"
cairn: 1
name: locked
lock: {lock}
steps:
  - id: hold
    # Holds the lock until the test creates `release` (hang protection: 120 s).
    shell: for _ in $(seq 1200); do [ -f release ] && exit 0; sleep 0.1; done; exit 1
"#
        ),
    );
    let mut first = Live::spawn(sb.command("runbook.yaml", &[]));
    let started = first.wait_for(|e| e["event"] == "run_started");
    let holder = started["run_id"].as_str().expect("run id").to_string();
    first.wait_for(|e| e["event"] == "step_started" && e["step"] == "hold");

    let second = sb.run("runbook.yaml", &[]);
    second.expect_code(1);
    assert!(
        second
            .stderr
            .contains(&format!("lock `{lock}` is held by run {holder}")),
        "{second}"
    );
    assert!(second.stderr.contains("nothing was run"), "{second}");
    assert!(second.events.is_empty(), "{second}");

    sb.write("release", "");
    let status = wait_or_kill(first.child(), Duration::from_secs(120)).expect("first run ends");
    assert_eq!(status.code(), Some(0));

    let third = sb.run("runbook.yaml", &[]);
    third.expect_code(0);
}
