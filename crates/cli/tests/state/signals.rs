//! SIGTERM during a step: the step's processes are stopped, `finally` runs, cairn exits 130,
//! the run is `interrupted`, and `cairn resume` finishes it.

use crate::common::{Live, Sandbox, eventually, gone_within, signal};
use nix::sys::signal::Signal;
use std::time::Duration;

#[test]
fn sigterm_interrupts_then_resume_completes() {
    let sb = Sandbox::new();
    let (log, again, pid) = (sb.file("log.txt"), sb.file("again"), sb.file("slow.pid"));
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: interrupted
steps:
  - id: one
    shell: echo one >> {log}
  - id: slow
    shell: |
      if [ -e {again} ]; then echo quick >> {log}; exit 0; fi
      touch {again}
      echo $$ > {pid}.tmp && mv {pid}.tmp {pid}
      exec sleep 30
  - id: three
    shell: echo three >> {log}
finally:
  - id: cleanup
    shell: echo cleanup >> {log}
"
        ),
    );
    let mut live = Live::spawn(sb.command(&["run", "rb.yaml", "--log-format", "json"]));
    let run = live.wait_for(|e| e["event"] == "run_started")["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    live.wait_for(|e| e["event"] == "step_started" && e["step"] == "slow");
    eventually("the slow step's sleep", || sb.exists("slow.pid"));
    let sleeper: i32 = sb.read("slow.pid").trim().parse().expect("a pid");

    signal(live.pid(), Signal::SIGTERM);
    let out = live.finish();
    out.expect(130);
    assert_eq!(out.outcome(), "interrupted", "{out}");
    assert!(
        gone_within(sleeper, Duration::from_secs(30)),
        "the step's `sleep 30` (pid {sleeper}) outlived the interruption"
    );
    assert_eq!(sb.lines("log.txt"), ["one", "cleanup"], "finally ran");
    let runs = sb.runs(&[]);
    assert_eq!(runs[0]["status"], "interrupted");
    assert_eq!(sb.step(&run, "slow")["status"], "cancelled");
    assert_eq!(
        sb.runs(&["--status", "interrupted"]).len(),
        1,
        "the status filter sees it"
    );

    let resumed = sb.resume(&run, &[]);
    resumed.expect(0);
    assert_eq!(resumed.started(), ["slow", "three", "cleanup"], "{resumed}");
    assert_eq!(
        sb.lines("log.txt"),
        ["one", "cleanup", "quick", "three", "cleanup"]
    );
    assert_eq!(sb.only_run()["status"], "succeeded");
}
