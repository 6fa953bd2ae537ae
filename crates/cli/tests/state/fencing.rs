//! Two `cairn resume` of one run started at the same moment: exactly one runs it, the other is
//! refused at once (exit 1), naming the process that holds the run (or the run's `lock`). Real
//! processes, on SQLite and on PostgreSQL, several trials each.

use crate::common::{Live, Out, PgSchema, Sandbox};

const TRIALS: usize = 5;

/// `gate` fails until the file `go` exists; `work` appends one line per execution and takes a
/// moment, so that the two resumes overlap.
fn runbook(sb: &Sandbox, lock: bool) -> String {
    format!(
        "cairn: 1
name: two-resumes
{lock}steps:
  - id: gate
    shell: test -e {go}
  - id: work
    shell: echo $$ >> {work}; sleep 1
",
        go = sb.file("go"),
        work = sb.file("work.txt"),
        lock = if lock { "lock: two-resumes\n" } else { "" },
    )
}

pub fn two_resumes_at_once_run_the_step_once(sb: &Sandbox) {
    race(sb, false, TRIALS);
}

/// With a runbook `lock`, each resume takes the lock before its claim and again after it; the
/// loser must be refused (by the claim or by the lock) and the winner must keep both.
fn race(sb: &Sandbox, lock: bool, trials: usize) {
    sb.write("rb.yaml", runbook(sb, lock));
    for trial in 0..trials {
        let _ = std::fs::remove_file(sb.path().join("go"));
        let _ = std::fs::remove_file(sb.path().join("work.txt"));
        let run = sb.run("rb.yaml", &[]).expect(1).run_id();
        sb.write("go", "");
        let args = ["resume", run.as_str(), "--log-format", "json"];
        let (a, b) = (
            Live::spawn(sb.command(&args)),
            Live::spawn(sb.command(&args)),
        );
        let (a, b) = (a.finish(), b.finish());
        let (won, lost): (Vec<&Out>, Vec<&Out>) =
            [&a, &b].into_iter().partition(|o| o.code == Some(0));
        assert_eq!(
            (won.len(), lost.len()),
            (1, 1),
            "trial {trial}: one resume wins, one is refused\n{a}\n{b}"
        );
        let lost = lost[0];
        lost.expect(1);
        if !lock || lost.stderr.contains("resume refused") {
            lost.says("resume refused, nothing was run")
                .says(&format!("run {run} is "))
                .says(" by pid ")
                .says(" on host ")
                .says(" since ");
        } else {
            lost.says("lock `two-resumes` is held by run").says(&run);
        }
        assert!(
            lost.started().is_empty(),
            "trial {trial}: the refused resume started nothing\n{lost}"
        );
        assert_eq!(
            sb.lines("work.txt").len(),
            1,
            "trial {trial}: `work` ran exactly once\n{a}\n{b}"
        );
        assert_eq!(won[0].started(), ["gate", "work"], "{}", won[0]);
        let record = sb.runs(&[]).into_iter().find(|r| r["id"] == run.as_str());
        let record = record.expect("the run is listed");
        assert_eq!(record["status"], "succeeded");
        assert_eq!(record["attempt"], 2, "one claim, one attempt");
    }
}

#[test]
fn two_resumes_at_once_run_the_step_once_on_sqlite() {
    two_resumes_at_once_run_the_step_once(&Sandbox::new());
}

#[test]
fn two_resumes_at_once_run_the_step_once_on_postgres() {
    let schema = PgSchema::new("fencing");
    two_resumes_at_once_run_the_step_once(&Sandbox::with_state(&schema.url()));
}

#[test]
fn two_resumes_of_a_locked_run_run_it_once_on_postgres() {
    let schema = PgSchema::new("fencing_lock");
    race(&Sandbox::with_state(&schema.url()), true, 30);
}

#[test]
fn two_resumes_of_a_locked_run_run_it_once_on_sqlite() {
    race(&Sandbox::new(), true, TRIALS);
}
