//! Ctrl-C: running steps are stopped (their processes killed), `finally` runs, exit 130.

use super::common::{Live, Sandbox, gone_within, wait_or_kill};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

#[test]
fn sigint_stops_the_step_runs_finally_and_exits_130() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        r#"
cairn: 1
name: interrupted
steps:
  - id: slow
    shell: sleep 30 & echo $! > sleep.pid; wait
  - id: never
    shell: touch never
finally:
  - id: cleanup
    shell: touch cleanup
"#,
    );
    let mut live = Live::spawn(sb.command("runbook.yaml", &[]));
    live.wait_for(|e| e["event"] == "step_started" && e["step"] == "slow");
    // The event comes before the process: wait for the sleep to be there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let sleep_pid = loop {
        if let Some(pid) = std::fs::read_to_string(sb.path().join("sleep.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the step never wrote its pid");
        std::thread::sleep(Duration::from_millis(20));
    };

    kill(Pid::from_raw(live.pid()), Signal::SIGINT).expect("send SIGINT to cairn");
    let clock = Instant::now();
    let status = wait_or_kill(&mut live.child, Duration::from_secs(60)).expect("cairn exited");
    let took = clock.elapsed();
    live.drain();

    assert_eq!(status.code(), Some(130), "events: {:#?}", live.seen);
    // Not the 30 s of the sleep: a few seconds at most (generous for a loaded machine).
    assert!(took < Duration::from_secs(20), "exit took {took:?}");
    assert!(sb.exists("cleanup"), "finally ran");
    assert!(!sb.exists("never"));
    assert!(
        gone_within(sleep_pid, Duration::from_secs(10)),
        "the step's sleep {sleep_pid} survived Ctrl-C"
    );
    let end = live.seen.last().expect("events");
    assert_eq!(end["event"], "run_finished");
    assert_eq!(end["outcome"], "interrupted");
    let status_of = |id: &str| {
        end["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .map(|s| s["status"].clone())
            .expect("in the summary")
    };
    assert_eq!(status_of("slow"), "cancelled");
    assert_eq!(status_of("never"), "cancelled");
    assert_eq!(status_of("cleanup"), "succeeded");
}
