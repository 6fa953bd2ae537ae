//! Runbook-level `lock:`: at most one active (running or paused) run holds it.

use crate::common::{Live, Sandbox};

fn locked(sb: &Sandbox, gate: &str) -> String {
    format!(
        "cairn: 1
name: locked
lock: x
steps:
  - id: work
    shell: echo work >> {log}
  - id: gate
    {gate}
",
        log = sb.file("log.txt")
    )
}

/// The second run is refused before it runs anything, naming the holder run and host.
fn refused(sb: &Sandbox, holder: &str) {
    let host = sb.runs(&[])[0]["host"].as_str().expect("host").to_string();
    let before = sb.lines("log.txt");
    let second = sb.run("rb.yaml", &[]);
    second
        .expect(1)
        .says(&format!("lock `x` is held by run {holder} on host {host}"))
        .says("nothing was run");
    assert!(second.started().is_empty(), "{second}");
    assert_eq!(sb.lines("log.txt"), before);
}

#[test]
fn a_paused_run_keeps_its_lock() {
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        locked(&sb, "approval: { message: Go?, allow_self_approval: true }"),
    );
    let first = sb.run("rb.yaml", &[]).expect(3).run_id();
    refused(&sb, &first);

    sb.cairn(&["approve", &first, "gate", "--by", "alice"])
        .expect(0);
    sb.resume(&first, &[]).expect(0);
    assert_eq!(sb.runs(&["--status", "succeeded"])[0]["id"], first);

    // Released with the end of the run: the next run takes it.
    let next = sb.run("rb.yaml", &["--auto-approve"]);
    next.expect(0);
    assert_ne!(next.run_id(), first);
}

#[test]
fn a_running_run_holds_its_lock_until_it_ends() {
    let sb = Sandbox::new();
    let go = sb.file("go");
    sb.write(
        "rb.yaml",
        locked(
            &sb,
            &format!("shell: while [ ! -e {go} ]; do sleep 0.05; done"),
        ),
    );
    let mut first = Live::spawn(sb.command(&["run", "rb.yaml", "--log-format", "json"]));
    let started = first.wait_for(|e| e["event"] == "run_started");
    first.wait_for(|e| e["event"] == "step_started" && e["step"] == "gate");
    let id = started["run_id"].as_str().expect("run id").to_string();
    assert_eq!(sb.only_run()["status"], "running");
    refused(&sb, &id);

    sb.write("go", "");
    first.finish().expect(0);
    sb.run("rb.yaml", &[]).expect(0);
}

/// A step `lock:` is shared across runbooks: while one run's step holds it, another run's step
/// that needs it fails at once (naming the holder); once released, a resume runs it.
#[test]
fn a_step_lock_is_shared_across_runbooks() {
    let sb = Sandbox::new();
    let (go, log) = (sb.file("go"), sb.file("log.txt"));
    sb.write(
        "holder.yaml",
        format!(
            "cairn: 1\nname: holder\nsteps:\n  - id: hold\n    lock: \"db:prod\"\n    \
             shell: while [ ! -e {go} ]; do sleep 0.05; done\n  - id: after\n    \
             shell: echo holder-after >> {log}\n"
        ),
    );
    sb.write(
        "other.yaml",
        format!(
            "cairn: 1\nname: other\nsteps:\n  - id: free\n    shell: echo other-free >> {log}\n  \
             - id: use\n    lock: \"db:prod\"\n    shell: echo other-use >> {log}\n"
        ),
    );
    let mut holder = Live::spawn(sb.command(&["run", "holder.yaml", "--log-format", "json"]));
    let started = holder.wait_for(|e| e["event"] == "run_started");
    let holder_id = started["run_id"].as_str().expect("run id").to_string();
    holder.wait_for(|e| e["event"] == "step_started" && e["step"] == "hold");

    let other = sb.run("other.yaml", &[]);
    other.expect(1);
    assert_eq!(
        other.started(),
        ["free"],
        "the locked step did not start\n{other}"
    );
    let other_id = other.run_id();
    let used = sb.step(&other_id, "use");
    assert_eq!(used["status"], "failed");
    let error = used["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("lock `db:prod` is held by run {holder_id}")),
        "{error}"
    );

    sb.write("go", "");
    holder.finish().expect(0);
    sb.resume(&other_id, &[]).expect(0);
    assert_eq!(
        sb.lines("log.txt"),
        ["other-free", "holder-after", "other-use"]
    );
}
