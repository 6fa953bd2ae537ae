//! The crash harness: `cairn run`, then `cairn resume`, SIGKILLed again and again at random
//! moments while a 60-step runbook runs, then resumed to its end. Whatever the moment of the
//! kill, the checkpoints must hold: every step runs, a step recorded `succeeded` never runs
//! again, only the step in flight at a kill may run twice, and nothing is left running.
//!
//! A second test kills `cairn` while parallel steps, `for_each` items and a `uses` sub-run
//! each hold a process meant to live five minutes, on SQLite and PostgreSQL: every one must be
//! gone soon after, and a resume runs each of them exactly once more.
//!
//! A third kills the resume that acts on an approved gate while the step after it runs: the
//! next resume keeps the answer and runs only what is left.
//!
//! The kill moments come from a seeded generator; the seed is in every assertion message and
//! `CAIRN_CRASH_SEED=N` replays it (the machine's speed still moves the kills around).

#[path = "state/common.rs"]
mod common;

use common::{Sandbox, alive, children_of, gone_within, signal, wait_stopped};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

const STEPS: usize = 60;
const KILLS: usize = 8;

/// splitmix64: small, seedable, good enough to spread kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn seed() -> u64 {
    std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

fn runbook(sb: &Sandbox) -> String {
    let (log, pids) = (sb.file("LOG"), sb.file("PIDS"));
    let mut yaml = String::from("cairn: 1\nname: crash-harness\nsteps:\n");
    for i in 0..STEPS {
        yaml.push_str(&format!(
            "  - id: s{i}\n    shell: echo {{{{ run.step_key }}}} >> '{log}'; echo $$ >> '{pids}'; sleep 0.02\n"
        ));
    }
    yaml
}

/// How many times each step wrote its line, by step id; every line must carry `run`'s key.
fn counts(sb: &Sandbox, run: Option<&str>, ctx: &str) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for line in sb.lines("LOG") {
        let (id, step) = line
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{ctx}: a LOG line is not a step key: {line:?}"));
        if let Some(run) = run {
            assert_eq!(id, run, "{ctx}: step keys are stable across resumes");
        }
        *n.entry(step.to_string()).or_default() += 1;
    }
    n
}

/// Each step's stored status, from `cairn show --output json`.
fn statuses(sb: &Sandbox, run: &str) -> BTreeMap<String, String> {
    sb.show(run)["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    let id = s["step_id"].as_str().unwrap_or_default().to_string();
                    (id, s["status"].as_str().unwrap_or_default().to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What the store and the LOG said just after one kill.
struct Snapshot {
    statuses: BTreeMap<String, String>,
    counts: BTreeMap<String, usize>,
}

fn current_run(sb: &Sandbox) -> Option<Value> {
    // `cairn runs` refuses a store that does not exist yet: before the first launch, no run.
    if !sb.exists("state.db") {
        return None;
    }
    let runs = sb.runs(&[]);
    assert!(runs.len() <= 1, "one run only: {runs:#?}");
    runs.into_iter().next()
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_repeats_only_the_step_in_flight() {
    let seed = seed();
    let ctx = format!("seed {seed} (replay with CAIRN_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let sb = Sandbox::new();
    sb.write("rb.yaml", runbook(&sb));

    let mut snapshots: Vec<Snapshot> = Vec::new();
    let mut kills = 0;
    let mut launches = 0;
    while kills < KILLS {
        launches += 1;
        assert!(launches < 10 * KILLS, "{ctx}: too many launches");
        let run = current_run(&sb);
        if run.as_ref().is_some_and(|r| r["status"] == "succeeded") {
            break;
        }
        let id = run
            .as_ref()
            .and_then(|r| r["id"].as_str())
            .map(str::to_string);
        let args: Vec<&str> = match &id {
            None => vec!["run", "rb.yaml"],
            Some(id) => vec!["resume", id],
        };
        let mut command = sb.command(&args);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = command.spawn().expect("spawn cairn");
        let pid = i32::try_from(child.id()).expect("pid");
        std::thread::sleep(Duration::from_millis(rng.between(50, 400)));
        if let Some(status) = child.try_wait().expect("wait") {
            assert_eq!(
                status.code(),
                Some(0),
                "{ctx}: launch {launches} ended by itself"
            );
            break;
        }
        // Frozen first, so that it cannot start another step while its children are listed;
        // then killed. The step in flight is let end (its death signal or its own end) before
        // the store and the LOG are read.
        signal(pid, Signal::SIGSTOP);
        wait_stopped(pid);
        let orphans = children_of(pid);
        signal(pid, Signal::SIGKILL);
        let _ = child.wait();
        kills += 1;
        for o in orphans {
            assert!(
                gone_within(o, Duration::from_secs(60)),
                "{ctx}: pid {o}, a child of the killed cairn, is still running"
            );
        }
        let Some(run) = current_run(&sb) else {
            // Killed before the run was recorded: nothing may have run.
            assert!(
                sb.lines("LOG").is_empty(),
                "{ctx}: a step ran before its run existed"
            );
            continue;
        };
        let id = run["id"].as_str().expect("id").to_string();
        assert_ne!(
            run["status"], "running",
            "{ctx}: a killed run is not running"
        );
        let snap = Snapshot {
            statuses: statuses(&sb, &id),
            counts: counts(&sb, Some(&id), &ctx),
        };
        let in_flight = snap.statuses.values().filter(|s| *s == "running").count();
        assert!(
            in_flight <= 1,
            "{ctx}: sequential steps, {in_flight} running at once"
        );
        for (step, n) in &snap.counts {
            assert!(
                snap.statuses.contains_key(step),
                "{ctx}: `{step}` ran {n} time(s) with no checkpoint: `running` must be \
                 committed before the action"
            );
        }
        snapshots.push(snap);
    }

    // Whatever state the kills left, resuming finishes the run.
    let run = match current_run(&sb) {
        Some(r) => r["id"].as_str().expect("id").to_string(),
        None => sb.run("rb.yaml", &[]).expect(0).run_id(),
    };
    if current_run(&sb).is_some_and(|r| r["status"] != "succeeded") {
        let last = sb.resume(&run, &[]);
        assert_eq!(last.code, Some(0), "{ctx}: the last resume\n{last}");
    }
    let fin = current_run(&sb).expect("the run");
    assert_eq!(fin["status"], "succeeded", "{ctx}: {fin:#}");
    assert!(kills >= 1, "{ctx}: the harness never killed cairn");

    let counts = counts(&sb, Some(&run), &ctx);
    let mut extra = 0;
    for i in 0..STEPS {
        let step = format!("s{i}");
        let n = counts.get(&step).copied().unwrap_or(0);
        assert!(n >= 1, "{ctx}: `{step}` never ran ({kills} kills)");
        extra += n - 1;
        // A second run of a step is only allowed if a kill caught it in flight.
        let caught = snapshots
            .iter()
            .filter(|s| s.statuses.get(&step).is_some_and(|st| st == "running"))
            .count();
        assert!(
            n - 1 <= caught,
            "{ctx}: `{step}` ran {n} times but was in flight at only {caught} kill(s)"
        );
    }
    assert!(
        extra <= kills,
        "{ctx}: {extra} repeated step runs for {kills} kills: {counts:?}"
    );
    // A step recorded succeeded never ran again.
    for (k, snap) in snapshots.iter().enumerate() {
        for (step, status) in &snap.statuses {
            if status == "succeeded" {
                assert_eq!(
                    counts.get(step),
                    snap.counts.get(step),
                    "{ctx}: `{step}` was succeeded at kill {} and ran again later",
                    k + 1
                );
            }
        }
    }
    // No step process outlived its cairn.
    for line in sb.lines("PIDS") {
        let pid: i32 = line.trim().parse().expect("a pid");
        assert!(
            !alive(pid) || gone_within(pid, Duration::from_secs(60)),
            "{ctx}: step process {pid} is still running"
        );
    }
    eprintln!(
        "crash harness: {ctx}: {kills} kills over {launches} launches, {extra} step(s) ran twice"
    );
}

/// Parallel branches, a `for_each` and a `uses` sub-run, each step a process that would live
/// five minutes; `cairn` is SIGKILLed while they all run. Every step process must be gone
/// soon after (a process left behind fails this, as it would live on for minutes), the run
/// must read `interrupted`, and a resume must run each unfinished step (and item) exactly once
/// more, on SQLite and on PostgreSQL.
fn kill_while_parallel_steps_run(sb: &Sandbox) {
    let (pids, log) = (sb.file("PIDS"), sb.file("LOG"));
    sb.write(
        "child.yaml",
        format!(
            "cairn: 1\nname: child\nsteps:\n  - id: inner\n    shell: echo child >> '{log}'; echo $$ >> '{pids}'; sleep ${{SLEEP:-300}}\n"
        ),
    );
    let yaml = |sleep: &str| {
        format!(
            "cairn: 1
name: parallel-kill
steps:
  - id: a
    needs: []
    shell: echo a >> '{log}'; echo $$ >> '{pids}'; sleep {sleep}
  - id: b
    needs: []
    shell: echo b >> '{log}'; echo $$ >> '{pids}'; sleep {sleep}
  - id: each
    needs: []
    for_each: [0, 1, 2]
    concurrency: 3
    shell: echo each{{{{ item }}}} >> '{log}'; echo $$ >> '{pids}'; sleep {sleep}
  - id: sub
    needs: []
    uses: child.yaml
  - id: after
    needs: [a, b, each, sub]
    shell: echo after >> '{log}'
"
        )
    };
    sb.write("rb.yaml", yaml("300"));
    let mut command = sb.command(&["run", "rb.yaml"]);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = command.spawn().expect("spawn cairn");
    let pid = i32::try_from(child.id()).expect("pid");
    // a, b, three items and the sub-run's step: six processes.
    common::eventually("six step processes", || sb.lines("PIDS").len() >= 6);
    signal(pid, Signal::SIGKILL);
    let _ = child.wait();
    for line in sb.lines("PIDS") {
        let p: i32 = line.trim().parse().expect("a pid");
        assert!(
            gone_within(p, Duration::from_secs(20)),
            "step process {p} outlived the killed cairn (it sleeps 300 s)"
        );
    }
    let runs = sb.runs(&[]);
    let parent = runs
        .iter()
        .find(|r| r["runbook"] == "parallel-kill")
        .expect("the run");
    assert_eq!(parent["status"], "interrupted", "{parent:#}");
    let id = parent["id"].as_str().expect("id").to_string();

    // The steps were in flight (in doubt) and are idempotent: the resume runs each once more.
    sb.write("rb.yaml", yaml("0"));
    let mut resume = sb.command(&["resume", &id, "--log-format", "json"]);
    resume.env("SLEEP", "0");
    let done = common::finish(resume);
    done.expect(0);
    let mut lines = sb.lines("LOG");
    lines.sort();
    assert_eq!(
        lines,
        [
            "a", "a", "after", "b", "b", "child", "child", "each0", "each0", "each1", "each1",
            "each2", "each2"
        ],
        "each step and item ran once before the kill and once on resume\n{done}"
    );
}

#[test]
fn kill_while_parallel_steps_run_on_sqlite() {
    kill_while_parallel_steps_run(&Sandbox::new());
}

#[test]
fn kill_while_parallel_steps_run_on_postgres() {
    let schema = common::PgSchema::new("crash");
    kill_while_parallel_steps_run(&Sandbox::with_state(&schema.url()));
}

/// A `for_each` of 20 items, one at a time, killed while item 16 runs: the resume runs items
/// 16 to 19 only (16 was in flight), not the 16 that had finished, and the step's outputs
/// still list all 20 in order.
#[test]
fn a_for_each_killed_mid_way_resumes_only_the_unfinished_items() {
    let sb = Sandbox::new();
    let (log, after) = (sb.file("items.txt"), sb.file("after.txt"));
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: twenty-killed
steps:
  - id: each
    for_each: \"{{{{ range(20) | list }}}}\"
    shell: echo {{{{ item }}}} >> '{log}'; test {{{{ item }}}} -lt 16 || sleep ${{SLEEP:-300}}
    outputs: {{ n: \"{{{{ item }}}}\" }}
  - id: after
    shell: echo {{{{ steps.each.outputs.n | join(',') }}}} > '{after}'
"
        ),
    );
    let mut command = sb.command(&["run", "rb.yaml"]);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = command.spawn().expect("spawn cairn");
    let pid = i32::try_from(child.id()).expect("pid");
    common::eventually("item 16 running", || sb.lines("items.txt").len() >= 17);
    signal(pid, Signal::SIGKILL);
    let _ = child.wait();
    let first: Vec<String> = (0..17).map(|k| k.to_string()).collect();
    assert_eq!(sb.lines("items.txt"), first);
    let run = current_run(&sb).expect("the run");
    assert_eq!(run["status"], "interrupted", "{run:#}");
    let id = run["id"].as_str().expect("id").to_string();

    let mut resume = sb.command(&["resume", &id, "--log-format", "json"]);
    resume.env("SLEEP", "0");
    let done = common::finish(resume);
    done.expect(0);
    assert_eq!(
        sb.lines("items.txt")[17..],
        ["16", "17", "18", "19"],
        "only the unfinished items ran again\n{done}"
    );
    let all: Vec<String> = (0..20).map(|k| k.to_string()).collect();
    assert_eq!(sb.read("after.txt").trim(), all.join(","));
}

#[test]
fn killed_after_an_approval_the_resume_keeps_the_answer_and_runs_only_what_is_left() {
    let sb = Sandbox::new();
    let (log, pid_file) = (sb.file("ran.txt"), sb.file("restore.pid"));
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: gated-kill
steps:
  - id: before
    shell: echo before >> '{log}'
  - id: gate
    approval: {{ message: Restore now?, allow_self_approval: true }}
  - id: restore
    shell: echo restore >> '{log}'; echo $$ > '{pid_file}'; sleep ${{SLEEP:-300}}
  - id: verify
    shell: echo verify >> '{log}'
"
        ),
    );
    common::finish(sb.command(&["run", "rb.yaml"])).expect(3);
    let id = current_run(&sb).expect("the run")["id"]
        .as_str()
        .expect("id")
        .to_string();
    common::finish(sb.command(&["approve", &id, "gate"])).expect(0);

    // The resume that acts on the answer is killed while the restore runs.
    let mut command = sb.command(&["resume", &id]);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = command.spawn().expect("spawn cairn");
    let pid = i32::try_from(child.id()).expect("pid");
    common::eventually("the restore running", || {
        sb.read("restore.pid").trim().parse::<i32>().is_ok()
    });
    let step = sb.read("restore.pid").trim().parse::<i32>().expect("pid");
    signal(pid, Signal::SIGKILL);
    let _ = child.wait();
    assert!(
        gone_within(step, Duration::from_secs(10)),
        "the restore's process outlived the killed resume"
    );
    let run = current_run(&sb).expect("the run");
    assert_eq!(run["status"], "interrupted", "{run:#}");

    // The next resume does not ask again: the answer is kept, and only what is left runs.
    let mut resume = sb.command(&["resume", &id]);
    resume.env("SLEEP", "0");
    common::finish(resume).expect(0);
    assert_eq!(
        sb.lines("ran.txt"),
        ["before", "restore", "restore", "verify"]
    );
}
