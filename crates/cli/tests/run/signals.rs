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
    let status = wait_or_kill(live.child(), Duration::from_secs(60)).expect("cairn exited");
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

/// Waits (up to a minute) for a step to write a pid into `name`.
fn pid_in(sb: &Sandbox, name: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(pid) = std::fs::read_to_string(sb.path().join(name))
            .ok()
            .filter(|s| s.ends_with('\n'))
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_ctrl_c_during_finally_stops_its_processes_too() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        r#"
cairn: 1
name: interrupted-twice
steps:
  - id: slow
    shell: sleep 100 & echo $! > slow.pid; wait
finally:
  - id: cleanup
    # One process in the step's group, one in a group of its own (`set -m`).
    shell: |
      set -m
      sleep 100 &
      echo $! > job.pid
      sleep 100 &
      echo $! > cleanup.pid
      wait
"#,
    );
    let mut live = Live::spawn(sb.command("runbook.yaml", &[]));
    live.wait_for(|e| e["event"] == "step_started" && e["step"] == "slow");
    let slow = pid_in(&sb, "slow.pid");
    kill(Pid::from_raw(live.pid()), Signal::SIGINT).expect("first SIGINT");
    live.wait_for(|e| e["event"] == "step_started" && e["step"] == "cleanup");
    let job = pid_in(&sb, "job.pid");
    let cleanup = pid_in(&sb, "cleanup.pid");
    assert!(
        gone_within(slow, Duration::from_secs(10)),
        "the first Ctrl-C left {slow} running"
    );

    kill(Pid::from_raw(live.pid()), Signal::SIGINT).expect("second SIGINT");
    let clock = Instant::now();
    let status = wait_or_kill(live.child(), Duration::from_secs(60)).expect("cairn exited");
    assert_eq!(status.code(), Some(130));
    assert!(
        clock.elapsed() < Duration::from_secs(10),
        "a second Ctrl-C exits at once, not after {:?}",
        clock.elapsed()
    );
    for pid in [cleanup, job] {
        assert!(
            gone_within(pid, Duration::from_secs(10)),
            "`finally`'s process {pid} kept running after the second Ctrl-C"
        );
    }
}

#[test]
fn sigkill_of_cairn_stops_every_process_of_the_step() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        r#"
cairn: 1
name: killed
steps:
  - id: slow
    shell: |
      set -m
      sleep 100 &
      echo $! > job.pid
      (setsid sleep 100 & echo $! > orphan.pid)
      sleep 100 &
      echo $! > sleep.pid
      wait
"#,
    );
    let mut live = Live::spawn(sb.command("runbook.yaml", &[]));
    let pids: Vec<i32> = ["job.pid", "orphan.pid", "sleep.pid"]
        .iter()
        .map(|f| pid_in(&sb, f))
        .collect();
    kill(Pid::from_raw(live.pid()), Signal::SIGKILL).expect("SIGKILL cairn");
    let _ = wait_or_kill(live.child(), Duration::from_secs(60));
    for pid in pids {
        assert!(
            gone_within(pid, Duration::from_secs(10)),
            "process {pid} of the step outlived cairn's SIGKILL"
        );
    }
}

/// Ctrl-C during a `for_each` of 100,000 items, a few of them running: the run stops within
/// seconds. Items that never started are not recorded one by one (resume runs every item
/// without a `succeeded` record, so their absence says "not started"): the store holds a
/// record for the items that ran and one for the step, not 100,000 `cancelled` rows.
#[test]
fn the_first_ctrl_c_on_a_huge_for_each_stops_within_seconds() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        r#"
cairn: 1
name: huge-fan-out
steps:
  - id: each
    for_each: "{{ range(100000) | list }}"
    shell: sleep 30
"#,
    );
    let mut live = Live::spawn(sb.command("runbook.yaml", &["--concurrency", "4"]));
    live.wait_for(|e| e["event"] == "step_started" && e["step"] == "each");
    kill(Pid::from_raw(live.pid()), Signal::SIGINT).expect("send SIGINT to cairn");
    let clock = Instant::now();
    let status = wait_or_kill(live.child(), Duration::from_secs(300)).expect("cairn exited");
    let took = clock.elapsed();
    live.drain();
    assert_eq!(status.code(), Some(130), "events: {:#?}", live.seen);
    // Generous for a debug build on a loaded machine (about 10 s there, most of it building
    // and masking the step's 100,000-item result); writing every item took over 300 s.
    assert!(took < Duration::from_secs(30), "exit took {took:?}");
    let rows = sqlite_count(&sb, "SELECT count(*) FROM cairn_steps WHERE item >= 0");
    assert!(
        rows <= 8,
        "only the items that started are recorded, not {rows} rows"
    );
}

/// One number from the run's SQLite state, through the `sqlite3` shell.
fn sqlite_count(sb: &Sandbox, sql: &str) -> u64 {
    let out = std::process::Command::new("sqlite3")
        .arg(sb.path().join("state.db"))
        .arg(sql)
        .output()
        .expect("sqlite3");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("sqlite3 said {out:?}"))
}
