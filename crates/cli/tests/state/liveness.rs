//! Liveness does not rest on clocks where it need not: on the run's own host, a run is alive
//! while its process (pid and start time) is. A reader whose clock jumped forward (here: the
//! run's last heartbeat set a day back) must neither list a live run as interrupted nor let
//! `cairn resume` run its in-flight step a second time beside it. Real processes, SQLite and
//! PostgreSQL.

use crate::common::{Live, PgSchema, Sandbox, pg, signal};
use nix::sys::signal::Signal;

fn live_run_survives_a_reader_clock_jump(sb: &Sandbox, age_heartbeat: impl Fn(&str)) {
    sb.write(
        "rb.yaml",
        &format!(
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
