//! A step that starts a daemon: `detach: true` leaves it running after the step and the run
//! (named in the result and the progress); without it the daemon is stopped with the step,
//! and named as a warning. Tested with a real HTTP server (`python3 -m http.server`).

use super::common::{Sandbox, gone_within};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// A runbook starting an HTTP server on `port` and waiting until it answers (so that what
/// the step leaves running is `python3`, not the shell about to become it), then asking it
/// for a page in the next step.
fn runbook(detach: bool, port: u16) -> String {
    format!(
        r#"
cairn: 1
name: daemon
secrets:
  token: {{ env: CAIRN_DAEMON_TOKEN }}
steps:
  - id: start
    {detach}shell: |
      nohup python3 -m http.server {port} --bind 127.0.0.1 >server.log 2>&1 &
      echo $! > server.pid
      for i in $(seq 100); do
        curl -fsS -o /dev/null http://127.0.0.1:{port}/ && break
        sleep 0.1
      done
      echo started
    env: {{ GIVEN: by-the-step }}
  - id: ask
    shell: curl -fsS -o /dev/null http://127.0.0.1:{port}/server.pid
    retry: {{ attempts: 50, delay: 100ms }}
"#,
        detach = if detach { "detach: true\n    " } else { "" },
    )
}

/// A free port below the kernel's ephemeral range (32768 up): the daemons these tests leave
/// running for a while must not take a port another test of this binary (the drill) asked the
/// kernel for and released a moment before using it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 500) as u16 * 20;
    loop {
        // 20000..32000, whatever the process id and however many tries.
        let port = 20_000 + (start + NEXT.fetch_add(1, Ordering::Relaxed) % 12_000) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn command(sb: &Sandbox, args: &[&str]) -> Command {
    let mut c = sb.command("runbook.yaml", args);
    c.env("CAIRN_DAEMON_TOKEN", "hunter2-daemon-token")
        .env("OPERATOR_EXPORT", "exported-in-the-shell");
    c
}

fn server_pid(sb: &Sandbox) -> i32 {
    sb.read("server.pid").trim().parse().expect("a pid")
}

/// SIGKILLs the daemon however the test ends.
struct Reap(i32);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn serves(port: u16) -> bool {
    Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_detached_daemon_outlives_the_step_and_the_run() {
    let sb = Sandbox::new();
    let port = free_port();
    sb.write("runbook.yaml", runbook(true, port));
    let run = sb.run_with(command(&sb, &["--report", "report.md"]));
    let pid = server_pid(&sb);
    let _reap = Reap(pid);
    run.expect_code(0);
    // The server answered the next step, and still does after Cairn exited.
    assert_eq!(run.status("ask"), "succeeded", "{run}");
    assert!(serves(port), "the daemon died with the run");
    let note = run.finished("start")["note"].as_str().expect("note");
    assert_eq!(note, format!("exit 0; left running: pid {pid} (python3)"));
    assert!(
        sb.read("report.md")
            .contains(&format!("Processes: left running: pid {pid} (python3)")),
        "{}",
        sb.read("report.md")
    );
    // The result records it too.
    let id = run.run_finished()["run_id"].as_str().expect("id");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["show", id, "--step", "start", "--output", "json", "--state"])
        .arg(sb.path().join("state.db"))
        .output()
        .expect("cairn show");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        shown[0]["result"]["detached"],
        serde_json::json!([{"pid": pid, "command": "python3"}]),
        "{shown}"
    );
    // Its environment: the step's own and the allowlist, not Cairn's secret nor what the
    // operator's shell exported.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    let names: Vec<&str> = environ
        .split('\0')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(environ.contains("GIVEN=by-the-step"), "{names:?}");
    assert!(names.contains(&"PATH"), "{names:?}");
    assert!(!environ.contains("hunter2-daemon-token"), "{names:?}");
    assert!(!environ.contains("exported-in-the-shell"), "{names:?}");
    assert!(!names.contains(&"NO_COLOR"), "{names:?}");
}

#[test]
fn without_detach_the_daemon_is_stopped_with_its_step_and_named() {
    let sb = Sandbox::new();
    let port = free_port();
    sb.write("runbook.yaml", runbook(false, port));
    let clock = Instant::now();
    let run = sb.run_with(command(&sb, &["--report", "report.md"]));
    let pid = server_pid(&sb);
    let _reap = Reap(pid);
    // The next step finds no server (its retries run out).
    run.expect_code(1);
    assert_eq!(run.status("ask"), "failed", "{run}");
    assert!(clock.elapsed() < Duration::from_secs(60));
    assert!(gone_within(pid, Duration::from_secs(5)), "not stopped");
    let note = run.finished("start")["note"].as_str().expect("note");
    assert_eq!(
        note,
        format!("exit 0; stopped what it left running: pid {pid} (python3)")
    );
    let md = sb.read("report.md");
    assert!(
        md.contains(&format!(
            "Warning: stopped what it left running: pid {pid} (python3)"
        )),
        "{md}"
    );
}

#[test]
fn a_detached_daemon_that_keeps_the_output_fails_the_step() {
    let sb = Sandbox::new();
    let port = free_port();
    sb.write(
        "runbook.yaml",
        runbook(true, port).replace(" >server.log 2>&1 &", " &"),
    );
    let run = sb.run_with(command(&sb, &[]));
    let pid = server_pid(&sb);
    let _reap = Reap(pid);
    run.expect_code(1);
    let error = run.finished("start")["error"].as_str().expect("error");
    assert_eq!(
        error,
        format!(
            "pid {pid} (python3) left running still holds the step's output, so it cannot run \
             on after the step: stopped; redirect its stdout and stderr (`nohup CMD >FILE 2>&1 &`)"
        )
    );
    assert!(gone_within(pid, Duration::from_secs(5)), "not stopped");
}

#[test]
fn detach_is_only_for_commands() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        "cairn: 1\nname: d\nsteps:\n  - id: w\n    detach: true\n    wait: 1s\n",
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
        err.contains("`detach` is only for `shell` and `argv` steps")
            && err.contains("runbook.yaml:5:5"),
        "{err}"
    );
}
