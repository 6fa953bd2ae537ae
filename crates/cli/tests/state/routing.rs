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
        &format!(
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
        &format!(
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
        &format!(
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
