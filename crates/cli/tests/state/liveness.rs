//! Liveness does not rest on clocks where it need not: on the run's own host, a run is alive
//! while its process (pid and start time) is. A reader whose clock jumped forward (here: the
//! run's last heartbeat set a day back) must neither list a live run as interrupted nor let
//! `cairn resume` run its in-flight step a second time beside it. Real processes, SQLite and
//! PostgreSQL.

use crate::common::{Live, PgSchema, Sandbox, eventually, finish, pg, signal};
use nix::sys::signal::Signal;

fn live_run_survives_a_reader_clock_jump(sb: &Sandbox, age_heartbeat: impl Fn(&str)) {
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1\nname: jump\nsteps:\n  - id: work\n    shell: echo $$ >> {work}; sleep 30\n",
            work = sb.file("work.txt")
        ),
    );
    let mut live = Live::spawn(sb.command(&["run", "rb.yaml", "--log-format", "json"]));
    let started = live.wait_for(|e| e["event"] == "run_started");
    let run = started["run_id"].as_str().expect("run id").to_string();
    live.wait_for(|e| e["event"] == "step_started" && e["step"] == "work");
    age_heartbeat(&run);
    let listed = sb.runs(&[]);
    assert_eq!(listed[0]["status"], "running", "{listed:#?}");
    let second = sb.resume(&run, &[]);
    second.expect(1).says("resume refused, nothing was run");
    assert!(second.started().is_empty(), "{second}");
    signal(live.pid(), Signal::SIGINT);
    let first = live.finish();
    first.expect(130);
    assert_eq!(
        sb.lines("work.txt").len(),
        1,
        "`work` ran once\n{first}\n{second}"
    );
}

#[test]
fn a_live_run_stays_running_when_a_readers_clock_jumps_on_sqlite() {
    let sb = Sandbox::new();
    let state = sb.state().to_string();
    live_run_survives_a_reader_clock_jump(&sb, |run| {
        // sqlite3 has no busy timeout of its own: it waits for the run's write lock here.
        let aged = std::process::Command::new("sqlite3")
            .args(["-cmd", ".timeout 10000"])
            .arg(&state)
            .arg(format!(
                "UPDATE cairn_runs SET heartbeat_at = '2000-01-01T00:00:00.000000Z' WHERE id = '{run}'"
            ))
            .status()
            .expect("run sqlite3")
            .success();
        assert!(aged);
    });
}

#[test]
fn a_live_run_stays_running_when_a_readers_clock_jumps_on_postgres() {
    let schema = PgSchema::new("liveness");
    let sb = Sandbox::with_state(&schema.url());
    live_run_survives_a_reader_clock_jump(&sb, |run| {
        pg(&format!(
            "UPDATE {}.cairn_runs SET heartbeat_at = '2000-01-01T00:00:00Z' WHERE id = '{run}'",
            schema.name
        ));
    });
}

/// A run made to look as if it ran on another host (its `host` changed in the store) and
/// heartbeated long ago by the reader's clock (a reader whose clock jumped forward): readers
/// with a 6 s lease (`CAIRN_STALE_AFTER_MS`) must not judge it by that time. The first look
/// says `running (unconfirmed)` and `cairn resume` refuses, saying how long to wait; once its
/// process is killed and its heartbeat counter has stood still past the lease, it is
/// interrupted and resumed, its in-flight step run again only then. (The lease is long enough
/// for the three looks to fit in it on a loaded machine: each is a `cairn` process of its own.)
fn foreign_run_judged_by_its_counter(sb: &Sandbox, make_foreign: impl Fn(&str)) {
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1\nname: far\nsteps:\n  - id: work\n    shell: echo $$ >> {work}; \
             while [ ! -e {go} ]; do sleep 0.1; done\n",
            work = sb.file("work.txt"),
            go = sb.file("go")
        ),
    );
    let mut live = Live::spawn(sb.command(&["run", "rb.yaml", "--log-format", "json"]));
    let started = live.wait_for(|e| e["event"] == "run_started");
    let run = started["run_id"].as_str().expect("run id").to_string();
    live.wait_for(|e| e["event"] == "step_started" && e["step"] == "work");
    make_foreign(&run);
    let reader = |args: &[&str]| {
        let mut c = sb.command(args);
        c.env("CAIRN_STALE_AFTER_MS", "6000");
        finish(c)
    };
    let listed = reader(&["runs", "--output", "json"]);
    listed.expect(0);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(listed[0]["status"], "running", "{listed:#}");
    assert_eq!(listed[0]["unconfirmed"], true, "{listed:#}");
    let table = reader(&["runs"]);
    table.expect(0);
    assert!(table.stdout.contains("running (unconfirmed)"), "{table}");
    let refused = reader(&["resume", &run, "--log-format", "json"]);
    refused
        .expect(1)
        .says("cannot be told yet")
        .says("retry then");
    assert!(refused.started().is_empty(), "{refused}");

    // Its process dies: nothing moves the counter any more.
    signal(live.pid(), nix::sys::signal::Signal::SIGKILL);
    live.finish();
    eventually("the run is judged interrupted from here", || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let out = reader(&["runs", "--output", "json"]);
        out.stdout.contains("\"interrupted\"")
    });
    sb.write("go", "");
    let resumed = reader(&["resume", &run, "--log-format", "json"]);
    resumed.expect(0);
    assert_eq!(sb.lines("work.txt").len(), 2, "{resumed}");
}

#[test]
fn a_run_of_another_host_is_judged_by_its_heartbeat_counter_on_sqlite() {
    let sb = Sandbox::new();
    let state = sb.state().to_string();
    foreign_run_judged_by_its_counter(&sb, |run| {
        // sqlite3 has no busy timeout of its own: it waits for the run's write lock here.
        let moved = std::process::Command::new("sqlite3")
            .args(["-cmd", ".timeout 10000"])
            .arg(&state)
            .arg(format!(
                "UPDATE cairn_runs SET host = 'elsewhere.example', \
                 heartbeat_at = '2000-01-01T00:00:00.000000Z' WHERE id = '{run}'"
            ))
            .status()
            .expect("run sqlite3")
            .success();
        assert!(moved);
    });
}

#[test]
fn a_run_of_another_host_is_judged_by_its_heartbeat_counter_on_postgres() {
    let schema = PgSchema::new("counter");
    let sb = Sandbox::with_state(&schema.url());
    foreign_run_judged_by_its_counter(&sb, |run| {
        pg(&format!(
            "UPDATE {}.cairn_runs SET host = 'elsewhere.example', \
             heartbeat_at = '2000-01-01T00:00:00Z' WHERE id = '{run}'",
            schema.name
        ));
    });
}
