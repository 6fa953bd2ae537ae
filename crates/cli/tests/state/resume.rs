//! `cairn resume`: after a failure fixed in the YAML, refusal of edits to succeeded steps,
//! `--from`, and steps left in doubt by a crash.

use crate::common::Sandbox;

/// Step 2 of 3 fails; step 1 appends to a file and has an output that step 3 echoes.
fn failing(sb: &Sandbox, second: &str) -> String {
    format!(
        "cairn: 1
name: fix-and-resume
steps:
  - id: first
    shell: echo first >> {side}; echo from-first
    outputs: {{ word: \"{{{{ result.stdout | trim }}}}\" }}
  - id: second
    shell: {second}
  - id: third
    shell: echo third got {{{{ steps.first.outputs.word }}}} >> {side}
",
        side = sb.file("side.txt")
    )
}

/// The 3 a.m. fix: only the failed step is edited, resume runs it and what follows, and the
/// step that succeeded neither runs again nor loses its output. Shared with the PostgreSQL test.
pub fn resume_after_fixing_the_failed_step(sb: &Sandbox) {
    sb.write("rb.yaml", failing(sb, "exit 1"));
    let first = sb.run("rb.yaml", &[]);
    first.expect(1);
    assert_eq!(first.outcome(), "failed", "{first}");
    let run = first.run_id();
    assert_eq!(sb.lines("side.txt"), ["first"]);
    assert_eq!(sb.only_run()["status"], "failed");
    assert_eq!(sb.step(&run, "second")["status"], "failed");

    sb.write("rb.yaml", failing(sb, "echo fixed"));
    let again = sb.resume(&run, &[]);
    again.expect(0);
    assert_eq!(again.run_id(), run, "resume continues the same run");
    assert_eq!(again.started(), ["second", "third"], "{again}");
    assert_eq!(
        sb.lines("side.txt"),
        ["first", "third got from-first"],
        "step 1 ran exactly once and its output reached step 3"
    );
    let record = sb.only_run();
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["attempt"], 2);
    assert_eq!(sb.step(&run, "first")["outputs"]["word"], "from-first");
}

#[test]
fn resume_after_fixing_the_failed_step_on_sqlite() {
    resume_after_fixing_the_failed_step(&Sandbox::new());
}

#[test]
fn an_edited_succeeded_step_is_refused_unless_allow_changed() {
    let sb = Sandbox::new();
    sb.write("rb.yaml", failing(&sb, "exit 1"));
    let run = sb.run("rb.yaml", &[]).expect(1).run_id();

    let edited = failing(&sb, "echo fixed").replace("echo from-first", "echo edited");
    sb.write("rb.yaml", &edited);
    let refused = sb.resume(&run, &[]);
    refused
        .expect(2)
        .says("step `first` succeeded and has been edited since")
        .says("--allow-changed");
    assert!(refused.events().is_empty(), "nothing ran: {refused}");
    assert_eq!(sb.lines("side.txt"), ["first"]);

    let accepted = sb.resume(&run, &["--allow-changed"]);
    accepted.expect(0);
    assert_eq!(accepted.started(), ["second", "third"], "{accepted}");
    // The succeeded step is not run again: its stored output is what step 3 sees.
    assert_eq!(sb.lines("side.txt"), ["first", "third got from-first"]);
}

#[test]
fn a_changed_needs_of_a_succeeded_step_is_refused() {
    let sb = Sandbox::new();
    sb.write("rb.yaml", failing(&sb, "exit 1"));
    let run = sb.run("rb.yaml", &[]).expect(1).run_id();

    // A new step before `first`: `first` now waits for it, so the DAG above it changed.
    let moved = failing(&sb, "echo fixed")
        .replace("steps:\n", "steps:\n  - id: zeroth\n    shell: \"true\"\n");
    sb.write("rb.yaml", &moved);
    sb.resume(&run, &[])
        .expect(2)
        .says("step `first` succeeded but what it waits for changed (was [], now [zeroth])");
    assert_eq!(sb.lines("side.txt"), ["first"]);
}

#[test]
fn resuming_a_succeeded_run_says_so() {
    let sb = Sandbox::new();
    sb.write("rb.yaml", failing(&sb, "echo fine"));
    let run = sb.run("rb.yaml", &[]).expect(0).run_id();
    let again = sb.resume(&run, &[]);
    again.expect(0).says("already succeeded");
    assert!(again.events().is_empty(), "nothing ran: {again}");
    assert_eq!(sb.lines("side.txt").len(), 2);
    assert_eq!(sb.only_run()["attempt"], 1);
}

/// a -> b -> c, and d beside them: `--from b` runs b and c again, neither a nor d.
#[test]
fn from_reruns_the_step_and_what_is_downstream_only() {
    let sb = Sandbox::new();
    let log = sb.file("log.txt");
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: from
steps:
  - id: a
    shell: echo a >> {log}
  - id: b
    shell: echo b >> {log}
  - id: c
    shell: echo c >> {log}
  - id: d
    needs: [a]
    shell: echo d >> {log}
"
        ),
    );
    let run = sb
        .run("rb.yaml", &["--concurrency", "1"])
        .expect(0)
        .run_id();
    let mut before = sb.lines("log.txt");
    before.sort();
    assert_eq!(before, ["a", "b", "c", "d"]);

    let from = sb.resume(&run, &["--from", "b"]);
    from.expect(0);
    let mut started = from.started();
    started.sort();
    assert_eq!(started, ["b", "c"], "{from}");
    let mut after = sb.lines("log.txt");
    after.sort();
    assert_eq!(after, ["a", "b", "b", "c", "c", "d"]);
    assert_eq!(sb.only_run()["status"], "succeeded");

    sb.resume(&run, &["--from", "nope"])
        .expect(2)
        .says("unknown step `nope`");
}

/// Step `two` kills its own cairn with SIGKILL (bash's grandparent: its parent is cairn's
/// spawner process): the run dies with `two` recorded `running`. `flag` makes it do so only once.
fn dies_in(sb: &Sandbox, idempotent: bool) -> String {
    format!(
        "cairn: 1
name: in-doubt
steps:
  - id: one
    shell: echo one >> {log}
  - id: two
    idempotent: {idempotent}
    shell: |
      echo two >> {log}
      if [ ! -e {flag} ]; then touch {flag}; kill -9 $(cut -d' ' -f4 /proc/$PPID/stat); exec sleep 2; fi
  - id: three
    shell: echo three >> {log}
",
        log = sb.file("log.txt"),
        flag = sb.file("flag"),
    )
}

/// Runs the dying runbook and returns the run id, with the run seen as interrupted.
fn crash(sb: &Sandbox, idempotent: bool) -> String {
    sb.write("rb.yaml", dies_in(sb, idempotent));
    let died = sb.run("rb.yaml", &[]);
    assert_eq!(died.signal, Some(9), "cairn was killed\n{died}");
    assert_eq!(sb.lines("log.txt"), ["one", "two"]);
    let run = died.run_id();
    assert_eq!(sb.only_run()["status"], "interrupted");
    assert_eq!(sb.step(&run, "two")["status"], "running");
    run
}

#[test]
fn an_in_doubt_step_that_is_not_idempotent_waits_for_rerun() {
    let sb = Sandbox::new();
    let run = crash(&sb, false);
    let refused = sb.resume(&run, &[]);
    refused
        .expect(2)
        .says("step `two` was running when the run stopped (in doubt) and is not idempotent")
        .says("--rerun STEP")
        .says("--skip STEP");
    assert!(refused.events().is_empty(), "nothing ran: {refused}");
    assert_eq!(sb.lines("log.txt"), ["one", "two"]);

    let rerun = sb.resume(&run, &["--rerun", "two"]);
    rerun.expect(0);
    assert_eq!(rerun.started(), ["two", "three"], "{rerun}");
    assert_eq!(sb.lines("log.txt"), ["one", "two", "two", "three"]);
    assert_eq!(sb.step(&run, "two")["status"], "succeeded");
}

#[test]
fn an_in_doubt_step_can_be_skipped() {
    let sb = Sandbox::new();
    let run = crash(&sb, false);
    let skipped = sb.resume(&run, &["--skip", "two"]);
    skipped.expect(0);
    assert_eq!(skipped.started(), ["three"], "{skipped}");
    assert_eq!(sb.lines("log.txt"), ["one", "two", "three"]);
    // The decision is kept: the step no longer shows as running in a finished run.
    let two = sb.step(&run, "two");
    assert_eq!(two["status"], "skipped", "{two:#}");
    assert_eq!(two["error"], "skipped on resume");
    assert_eq!(sb.only_run()["status"], "succeeded");
}

#[test]
fn an_in_doubt_idempotent_step_just_runs_again() {
    let sb = Sandbox::new();
    let run = crash(&sb, true);
    let again = sb.resume(&run, &[]);
    again.expect(0);
    assert_eq!(again.started(), ["two", "three"], "{again}");
    assert_eq!(sb.lines("log.txt"), ["one", "two", "two", "three"]);
}

#[test]
fn unknown_runs_are_refused() {
    let sb = Sandbox::new();
    // No store yet: refused, and none is created.
    sb.resume("01NOSUCHRUN", &[])
        .expect(2)
        .says("no state store at ");
    assert!(!sb.exists("state.db"));
    sb.write(
        "ok.yaml",
        "cairn: 1\nname: ok\nsteps:\n  - id: a\n    shell: 'true'\n",
    );
    sb.run("ok.yaml", &[]).expect(0);
    sb.resume("01NOSUCHRUN", &[])
        .expect(2)
        .says("no run `01NOSUCHRUN`");
}

/// `--rerun a` runs `a` again, and what needs it: their inputs are `a`'s new results.
#[test]
fn rerun_runs_that_step_and_what_needs_it() {
    let sb = Sandbox::new();
    let log = sb.file("log.txt");
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1\nname: rerun\nsteps:\n  - id: a\n    shell: echo a >> {log}\n  \
             - id: b\n    shell: echo b >> {log}\n  - id: c\n    shell: echo c >> {log}\n"
        ),
    );
    let run = sb.run("rb.yaml", &[]).expect(0).run_id();
    let again = sb.resume(&run, &["--rerun", "a"]);
    again.expect(0);
    assert_eq!(again.started(), ["a", "b", "c"], "{again}");
    assert_eq!(sb.lines("log.txt"), ["a", "b", "c", "a", "b", "c"]);
}

/// A `uses` step that runs again because a step above it ran again with a new value starts a
/// new sub-run with that value; the earlier sub-run, done with the old one, is not taken for it.
#[test]
fn a_uses_step_run_again_with_new_inputs_starts_a_new_sub_run() {
    let sb = Sandbox::new();
    let log = sb.file("log.txt");
    let value = sb.file("value.txt");
    sb.write("value.txt", "one\n");
    sb.write(
        "child.yaml",
        format!(
            "cairn: 1
name: child
inputs:
  x: {{ type: string }}
steps:
  - id: say
    shell: echo {{{{ inputs.x }}}} >> {log}
outputs:
  said: \"{{{{ inputs.x }}}}\"
"
        ),
    );
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: parent
steps:
  - id: pick
    shell: cat {value}
    outputs: {{ v: \"{{{{ result.stdout | trim }}}}\" }}
  - id: sub
    uses: child.yaml
    with: {{ x: \"{{{{ steps.pick.outputs.v }}}}\" }}
outputs:
  said: \"{{{{ steps.sub.result.said }}}}\"
"
        ),
    );
    let run = sb.run("rb.yaml", &[]).expect(0).run_id();
    assert_eq!(sb.lines("log.txt"), ["one"]);
    sb.write("value.txt", "two\n");
    sb.resume(&run, &["--from", "pick"]).expect(0);
    assert_eq!(sb.lines("log.txt"), ["one", "two"]);
    assert_eq!(sb.show(&run)["run"]["outputs"]["said"], "two");
}

/// A `for_each` step run again keeps only the items that succeeded with the same value at the
/// same place: an item whose value changed since (here from the environment) runs again.
#[test]
fn a_for_each_item_whose_value_changed_runs_again() {
    let sb = Sandbox::new();
    let log = sb.file("log.txt");
    let fixed = sb.file("fixed");
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: items
steps:
  - id: each
    for_each: \"{{{{ env.CAIRN_TEST_ITEMS | split(',') }}}}\"
    shell: test -e {fixed} || [ {{{{ item }}}} != c ]; echo {{{{ item }}}} >> {log}
"
        ),
    );
    let mut first = sb.command(&["run", "rb.yaml", "--log-format", "json"]);
    first.env("CAIRN_TEST_ITEMS", "a,b,c");
    let first = crate::common::finish(first);
    first.expect(1);
    let run = first.run_id();
    let mut done = sb.lines("log.txt");
    done.sort();
    assert_eq!(done, ["a", "b"]);
    sb.write("fixed", "");
    // The second item's value changed from b to z: it runs again; a, the same, does not.
    let mut again = sb.command(&["resume", &run, "--log-format", "json"]);
    again.env("CAIRN_TEST_ITEMS", "a,z,c");
    crate::common::finish(again).expect(0);
    let mut all = sb.lines("log.txt");
    all.sort();
    assert_eq!(all, ["a", "b", "c", "z"]);
}
