//! Steps routed to workers (`runs_on`), with real `cairn worker` processes on a real
//! PostgreSQL: a routed step runs on the worker whose labels match (its result records where),
//! its secrets are read there and never stored in the queue in clear, a worker SIGKILLed
//! mid-step is replaced without any succeeded step running twice, a drained worker finishes
//! what it holds and claims nothing more. Leases are short here (`CAIRN_WORKER_LEASE`), so
//! that a takeover takes seconds.

use crate::common::{HANG, Live, PgSchema, Sandbox, signal};
use crate::workers::{all_done, eventually, queue, rows, stop, submit, worker_id};
use nix::sys::signal::Signal;

/// Lease of every worker and of every run routing steps, in seconds.
const LEASE: &str = "2";

fn worker(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Live {
    let mut a = vec!["worker"];
    a.extend_from_slice(args);
    let mut c = sb.command(&a);
    c.env("CAIRN_WORKER_LEASE", LEASE);
    for (k, v) in env {
        c.env(k, v);
    }
    Live::spawn(c)
}

#[test]
fn a_routed_step_runs_on_the_worker_whose_labels_match_and_its_secret_never_travels() {
    let schema = PgSchema::new("route_labels");
    let sb = Sandbox::with_state(&schema.url());
    sb.write(
        "rb.yaml",
        "cairn: 1
name: two-hosts
secrets:
  token: { env: ROUTE_TOKEN }
steps:
  - id: here
    shell: echo here
  - id: on_db
    runs_on: { host: db1 }
    shell: echo \"db {{ secrets.token }}\"
  - id: on_app
    runs_on: { host: app1 }
    argv: [echo, app]
",
    );
    let secret = [("ROUTE_TOKEN", "tok-5ecret-value")];
    let app = worker(&sb, &["--labels", "host=app1"], &secret);
    let db = worker(&sb, &["--labels", "host=db1"], &secret);
    let (app_id, db_id) = (worker_id(&schema, app.pid()), worker_id(&schema, db.pid()));
    let id = submit(&sb, &["rb.yaml"]);
    let q = eventually("the run is done", HANG, || all_done(&schema, 1));
    assert_eq!(q[0]["outcome"], "succeeded", "{q:#?}");
    let on_db = sb.step(&id, "on_db");
    assert_eq!(on_db["status"], "succeeded");
    assert_eq!(
        on_db["result"]["ran_on"]["worker"],
        db_id.as_str(),
        "{on_db:#}"
    );
    assert_eq!(on_db["result"]["ran_on"]["labels"]["host"], "db1");
    // The secret was read on the worker, used, and masked on its way back.
    assert_eq!(on_db["result"]["stdout"], "db ***\n", "{on_db:#}");
    let on_app = sb.step(&id, "on_app");
    assert_eq!(on_app["result"]["ran_on"]["worker"], app_id.as_str());
    assert_eq!(on_app["result"]["stdout"], "app\n");
    // A step without `runs_on` ran where the run ran, and has no `ran_on`.
    assert!(sb.step(&id, "here")["result"].get("ran_on").is_none());
    let routed = rows(
        &schema,
        "SELECT id, status, action::text AS action, outcome::text AS outcome FROM cairn_step_queue",
    );
    assert_eq!(routed.len(), 2, "{routed:#?}");
    for r in &routed {
        assert_eq!(r["status"], "done");
        for col in ["action", "outcome"] {
            assert!(
                !r[col].as_str().unwrap_or("").contains("5ecret"),
                "the secret is stored in clear: {r:#}"
            );
        }
    }
    stop(app);
    stop(db);
}

/// A runbook whose routed step blocks the first time it runs and passes the second time.
fn blocking_routed(sb: &Sandbox, idempotent: bool) {
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: routed-kill
steps:
  - id: first
    shell: echo once >> {first}
  - id: second
    runs_on: {{ host: db }}
    idempotent: {idempotent}
    shell: echo go >> {second}; [ $(wc -l < {second}) -gt 1 ] || sleep 300
  - id: third
    shell: echo after >> {third}
",
            first = sb.file("first.txt"),
            second = sb.file("second.txt"),
            third = sb.file("third.txt"),
        ),
    );
}

#[test]
fn a_worker_killed_mid_routed_step_is_replaced_and_no_succeeded_step_runs_twice() {
    let schema = PgSchema::new("route_kill");
    let sb = Sandbox::with_state(&schema.url());
    blocking_routed(&sb, true);
    let origin = worker(&sb, &["--labels", "role=origin"], &[]);
    let d1 = worker(&sb, &["--labels", "host=db"], &[]);
    let id = submit(&sb, &["rb.yaml", "--labels", "role=origin"]);
    eventually("the routed step starts", HANG, || {
        sb.exists("second.txt").then_some(())
    });
    let d2 = worker(&sb, &["--labels", "host=db"], &[]);
    let d2_id = worker_id(&schema, d2.pid());
    signal(d1.pid(), Signal::SIGKILL);
    assert_eq!(d1.finish().signal, Some(9));
    let q = eventually("the run is done", HANG, || all_done(&schema, 1));
    assert_eq!(q[0]["outcome"], "succeeded", "{q:#?}");
    // The run itself was never taken over: only its routed step moved.
    assert_eq!(q[0]["claims"], 1);
    let second = sb.step(&id, "second");
    assert_eq!(
        second["result"]["ran_on"]["worker"],
        d2_id.as_str(),
        "{second:#}"
    );
    assert_eq!(sb.lines("first.txt"), ["once"]);
    assert_eq!(sb.lines("second.txt"), ["go", "go"]);
    assert_eq!(sb.lines("third.txt"), ["after"]);
    let claims = rows(&schema, "SELECT claims FROM cairn_step_queue");
    assert_eq!(claims[0]["claims"], 2, "reclaimed once: {claims:#?}");
    stop(origin);
    stop(d2);
}

#[test]
fn a_non_idempotent_routed_step_whose_worker_died_is_in_doubt_and_not_run_again() {
    let schema = PgSchema::new("route_doubt");
    let sb = Sandbox::with_state(&schema.url());
    blocking_routed(&sb, false);
    let origin = worker(&sb, &["--labels", "role=origin"], &[]);
    let d1 = worker(&sb, &["--labels", "host=db"], &[]);
    let id = submit(&sb, &["rb.yaml", "--labels", "role=origin"]);
    eventually("the routed step starts", HANG, || {
        sb.exists("second.txt").then_some(())
    });
    let d2 = worker(&sb, &["--labels", "host=db"], &[]);
    signal(d1.pid(), Signal::SIGKILL);
    let _ = d1.finish();
    let q = eventually("the run is done", HANG, || all_done(&schema, 1));
    assert_eq!(q[0]["outcome"], "failed", "{q:#?}");
    let second = sb.step(&id, "second");
    let error = second["error"].as_str().unwrap_or("");
    assert!(
        error.contains("in doubt") && error.contains("--rerun second"),
        "{second:#}"
    );
    assert_eq!(sb.lines("second.txt"), ["go"], "not run again");
    assert!(!sb.exists("third.txt"));
    stop(origin);
    stop(d2);
}

#[test]
fn sigusr1_drains_a_worker_it_finishes_what_it_holds_and_claims_nothing_more() {
    let schema = PgSchema::new("route_drain");
    let sb = Sandbox::with_state(&schema.url());
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: drained
steps:
  - id: slow
    shell: touch {started}; sleep 2; echo done >> {done}
",
            started = sb.file("started"),
            done = sb.file("done.txt"),
        ),
    );
    // One slot: the second run waits in the queue while the first runs; a worker that was not
    // draining would claim it as soon as the first ended.
    let w = worker(&sb, &["--concurrency", "1"], &[]);
    let wid = worker_id(&schema, w.pid());
    let first = submit(&sb, &["rb.yaml"]);
    eventually("the step starts", HANG, || {
        sb.exists("started").then_some(())
    });
    let second = submit(&sb, &["rb.yaml"]);
    signal(w.pid(), Signal::SIGUSR1);
    let out = w.finish();
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("draining"), "{out}");
    assert_eq!(
        sb.lines("done.txt"),
        ["done"],
        "the held run was finished, not interrupted"
    );
    let q = queue(&schema);
    let by_id = |id: &str| q.iter().find(|r| r["id"] == id).expect("queued").clone();
    assert_eq!(by_id(&first)["outcome"], "succeeded", "{q:#?}");
    assert_eq!(by_id(&first)["claims"], 1);
    assert_eq!(by_id(&second)["status"], "queued", "{q:#?}");
    assert_eq!(by_id(&second)["claims"], 0);
    let stopped = rows(
        &schema,
        &format!("SELECT stopped_at IS NOT NULL AS s FROM cairn_workers WHERE id = '{wid}'"),
    );
    assert_eq!(stopped[0]["s"], true);
}

#[test]
fn runs_on_with_a_sqlite_state_is_refused_at_its_line_and_nothing_runs() {
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1\nname: no-queue\nsteps:\n  - id: a\n    shell: touch {}\n  - id: b\n    runs_on: {{ host: db1 }}\n    shell: 'true'\n",
            sb.file("ran")
        ),
    );
    let out = sb.run("rb.yaml", &[]);
    out.expect(2);
    assert!(out.stderr.contains("rb.yaml:7:5"), "{out}");
    assert!(out.stderr.contains("PostgreSQL"), "{out}");
    assert!(!sb.exists("ran"));
}

#[test]
fn every_json_event_of_a_worker_running_runs_at_once_names_its_run() {
    let schema = PgSchema::new("route_json");
    let sb = Sandbox::with_state(&schema.url());
    sb.write(
        "rb.yaml",
        "cairn: 1\nname: interleaved\nsteps:\n  - id: a\n    shell: sleep 0.5\n  - id: b\n    shell: 'true'\n",
    );
    let w = worker(&sb, &["--concurrency", "2", "--log-format", "json"], &[]);
    let ids = [submit(&sb, &["rb.yaml"]), submit(&sb, &["rb.yaml"])];
    eventually("both runs done", HANG, || all_done(&schema, 2));
    let events = stop(w).events();
    for id in &ids {
        let of_run = events.iter().filter(|e| e["run_id"] == id.as_str()).count();
        assert!(of_run >= 5, "run {id}: {of_run} events in {events:#?}");
    }
    let unnamed: Vec<_> = events
        .iter()
        .filter(|e| !ids.iter().any(|id| e["run_id"] == id.as_str()))
        .collect();
    assert!(unnamed.is_empty(), "events naming no run: {unnamed:#?}");
}

/// A small deterministic generator for the chaos test (the seed is printed on failure).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Nanoseconds since the epoch of a `cairn show` time (RFC 3339).
fn nanos(t: &serde_json::Value) -> i128 {
    let t = t.as_str().unwrap_or_else(|| panic!("no time: {t}"));
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .timestamp_nanos_opt()
        .map(i128::from)
        .expect("in range")
}

#[test]
fn chaos_workers_killed_at_random_every_run_ends_once_and_no_succeeded_step_runs_again() {
    const RUNS: usize = 8;
    // At least 50 kills, each while work is queued or running (`CAIRN_CHAOS_KILLS` for more).
    let kills_wanted: usize = std::env::var("CAIRN_CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let seed = std::env::var("CAIRN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    eprintln!("chaos seed {seed} (CAIRN_CHAOS_SEED={seed} replays the kill choices)");
    let mut rng = XorShift(seed);
    let schema = PgSchema::new("route_chaos");
    let sb = Sandbox::with_state(&schema.url());
    let fx = sb.file("effects.txt");
    // Each step writes a `start` line when it starts and an `end` line when it ends, with the
    // run, the step and the time: the side effects counted below.
    let step = |id: &str, extra: &str, work: &str| {
        format!(
            "  - id: {id}\n{extra}    shell: echo \"{{{{ run.id }}}} {id} start $(date +%s%N)\" >> {fx}; {work}; echo \"{{{{ run.id }}}} {id} end $(date +%s%N)\" >> {fx}\n"
        )
    };
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1\nname: chaos\nsteps:\n{}{}{}",
            step("a", "", "sleep 0.3"),
            step("b", "    runs_on: { host: db }\n", "sleep 0.5"),
            step("c", "", "sleep 0.2"),
        ),
    );
    let labels = ["host=app", "host=app", "host=db", "host=db"];
    let spawn = |l: &str| worker(&sb, &["--labels", l, "--concurrency", "2"], &[]);
    let mut live: Vec<(Live, &str)> = labels.iter().map(|l| (spawn(l), *l)).collect();
    let mut ids: Vec<String> = (0..RUNS).map(|_| submit(&sb, &["rb.yaml"])).collect();
    let mut kills = 0;
    let deadline = std::time::Instant::now() + HANG;
    // Every kill falls while work is queued or running: on a fast machine the first runs may
    // all end before the kills are made, and then another run is submitted.
    while kills < kills_wanted || all_done(&schema, ids.len()).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "seed {seed}: runs not done: {:#?}",
            queue(&schema)
        );
        std::thread::sleep(std::time::Duration::from_millis(300 + rng.below(900)));
        if kills < kills_wanted {
            if all_done(&schema, ids.len()).is_some() {
                ids.push(submit(&sb, &["rb.yaml"]));
            }
            let i = rng.below(live.len() as u64) as usize;
            let (w, l) = live.swap_remove(i);
            signal(w.pid(), Signal::SIGKILL);
            let _ = w.finish();
            kills += 1;
            live.push((spawn(l), l));
        }
    }
    let q = all_done(&schema, ids.len()).expect("done");
    assert!(
        q.iter().all(|r| r["outcome"] == "succeeded"),
        "seed {seed}: every run ends succeeded: {q:#?}"
    );
    let effects = sb.lines("effects.txt");
    for id in &ids {
        let run = sb.show(id);
        assert_eq!(run["run"]["status"], "succeeded", "seed {seed}: {run:#}");
        for s in ["a", "b", "c"] {
            let rec = sb.step(id, s);
            assert_eq!(rec["status"], "succeeded", "seed {seed}: {rec:#}");
            let done_at = nanos(&rec["finished_at"]);
            let starts: Vec<i128> = effects
                .iter()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    (f.len() == 4 && f[0] == id && f[1] == s && f[2] == "start")
                        .then(|| f[3].parse().expect("time"))
                })
                .collect();
            assert!(!starts.is_empty(), "seed {seed}: {id} {s} never started");
            // No step ever started again once it was recorded succeeded.
            assert!(
                starts.iter().all(|t| *t < done_at),
                "seed {seed}: {id} {s} started after it succeeded: {starts:?} vs {done_at}"
            );
            if s == "b" {
                assert_eq!(rec["result"]["ran_on"]["labels"]["host"], "db", "{rec:#}");
            }
        }
    }
    eprintln!(
        "chaos: {kills} kills, {} runs, {} effect lines",
        ids.len(),
        effects.len()
    );
    for (w, _) in live {
        // Registered: its signal handlers are in place, so SIGTERM stops it cleanly.
        worker_id(&schema, w.pid());
        stop(w);
    }
}
