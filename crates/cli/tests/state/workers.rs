//! The run queue with real `cairn worker` processes on a real PostgreSQL: runs submitted with
//! `cairn submit` run exactly once, go only to workers whose labels match, survive a worker's
//! SIGKILL (another worker resumes them; a succeeded step never runs twice), release their
//! worker while paused, and a SIGTERM stops a worker cleanly. Each test has its own schema.
//!
//! No sleep stands for an assertion: every wait polls for the awaited state, with a deadline
//! far above what the behaviour needs.

use crate::common::{HANG, Live, PgSchema, Sandbox, signal};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Rows of `sql` (run in the test's schema) as JSON objects; none while the tables are not
/// made yet (the first `cairn` to open the store makes them).
pub(crate) fn rows(schema: &PgSchema, sql: &str) -> Vec<Value> {
    use sqlx::{Connection, Row};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&schema.url())
            .await
            .expect("connect");
        let wrapped = format!("SELECT coalesce(json_agg(t), '[]')::text AS j FROM ({sql}) t");
        let row = match sqlx::query(sqlx::AssertSqlSafe(wrapped))
            .fetch_one(&mut conn)
            .await
        {
            Ok(row) => row,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
                return Vec::new();
            }
            Err(e) => panic!("{sql}: {e}"),
        };
        let text: String = row.get("j");
        let _ = conn.close().await;
        match serde_json::from_str(&text).expect("json") {
            Value::Array(a) => a,
            other => panic!("not a list: {other}"),
        }
    })
}

/// Polls `check` every 100 ms until it gives a value; panics with `what` after `limit`.
pub(crate) fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn worker(sb: &Sandbox, args: &[&str]) -> Live {
    let mut a = vec!["worker"];
    a.extend_from_slice(args);
    Live::spawn(sb.command(&a))
}

pub(crate) fn submit(sb: &Sandbox, args: &[&str]) -> String {
    let mut a = vec!["submit"];
    a.extend_from_slice(args);
    let out = sb.cairn(&a);
    out.expect(0);
    out.stdout.trim().to_string()
}

/// The queue's rows by id.
pub(crate) fn queue(schema: &PgSchema) -> Vec<Value> {
    rows(
        schema,
        "SELECT id, status, worker, claims, outcome, labels FROM cairn_queue ORDER BY id",
    )
}

pub(crate) fn all_done(schema: &PgSchema, n: usize) -> Option<Vec<Value>> {
    let q = queue(schema);
    (q.len() == n && q.iter().all(|r| r["status"] == "done")).then_some(q)
}

/// SIGTERM, then the worker must exit 0 on its own.
pub(crate) fn stop(w: Live) -> crate::common::Out {
    signal(w.pid(), Signal::SIGTERM);
    let out = w.finish();
    assert_eq!(out.code, Some(0), "{out}");
    out
}

/// The worker id a worker process registered under.
pub(crate) fn worker_id(schema: &PgSchema, pid: i32) -> String {
    eventually("the worker registers", HANG, || {
        rows(
            schema,
            &format!("SELECT id FROM cairn_workers WHERE pid = {pid}"),
        )
        .first()
        .map(|r| r["id"].as_str().expect("id").to_string())
    })
}

#[test]
fn two_workers_run_ten_submitted_runs_each_exactly_once() {
    let schema = PgSchema::new("queue_ten");
    let sb = Sandbox::with_state(&schema.url());
    let ran = sb.file("ran.txt");
    sb.write(
        "rb.yaml",
        format!("cairn: 1\nname: once\nsteps:\n  - id: mark\n    shell: echo {{{{ run.id }}}} >> {ran}\n"),
    );
    let a = worker(&sb, &["--concurrency", "2"]);
    let b = worker(&sb, &["--concurrency", "2"]);
    let mut ids: Vec<String> = (0..10).map(|_| submit(&sb, &["rb.yaml"])).collect();
    let q = eventually("ten runs done", HANG, || all_done(&schema, 10));
    assert!(
        q.iter()
            .all(|r| r["outcome"] == "succeeded" && r["claims"] == 1),
        "{q:#?}"
    );
    let mut lines = sb.lines("ran.txt");
    lines.sort();
    ids.sort();
    assert_eq!(
        lines, ids,
        "each queued run ran its step exactly once, under its queued id"
    );
    let runs = sb.runs(&[]);
    assert_eq!(runs.len(), 10);
    assert!(
        runs.iter()
            .all(|r| r["status"] == "succeeded" && r["attempt"] == 1)
    );
    stop(a);
    stop(b);
}

#[test]
fn labels_route_a_run_to_the_matching_worker_only() {
    let schema = PgSchema::new("queue_labels");
    let sb = Sandbox::with_state(&schema.url());
    sb.write(
        "rb.yaml",
        "cairn: 1\nname: routed\nsteps:\n  - id: here\n    shell: 'true'\n",
    );
    let app = worker(&sb, &["--labels", "host=app1,zone=a"]);
    let db = worker(&sb, &["--labels", "host=db1,zone=a"]);
    let (app_id, db_id) = (worker_id(&schema, app.pid()), worker_id(&schema, db.pid()));
    let to_db: Vec<String> = (0..3)
        .map(|_| submit(&sb, &["rb.yaml", "--labels", "host=db1"]))
        .collect();
    let to_app: Vec<String> = (0..3)
        .map(|_| submit(&sb, &["rb.yaml", "--labels", "host=app1,zone=a"]))
        .collect();
    let anywhere = submit(&sb, &["rb.yaml"]);
    let nowhere = submit(&sb, &["rb.yaml", "--labels", "host=db1,zone=b"]);
    let q = eventually("seven runs done", HANG, || {
        let q = queue(&schema);
        (q.iter().filter(|r| r["status"] == "done").count() == 7).then_some(q)
    });
    let by_id = |id: &str| q.iter().find(|r| r["id"] == id).expect("queued").clone();
    for id in &to_db {
        assert_eq!(by_id(id)["worker"], db_id.as_str(), "{q:#?}");
    }
    for id in &to_app {
        assert_eq!(by_id(id)["worker"], app_id.as_str(), "{q:#?}");
    }
    assert_eq!(by_id(&anywhere)["status"], "done");
    // No worker has zone=b: it waits, unclaimed.
    assert_eq!(by_id(&nowhere)["status"], "queued");
    assert_eq!(by_id(&nowhere)["claims"], 0);
    // `cairn runs` lists the run no worker took, as queued, before it has a run record.
    let listed = sb.runs(&[]);
    assert!(
        listed
            .iter()
            .any(|r| r["id"] == nowhere.as_str() && r["status"] == "queued"),
        "{listed:#?}"
    );
    // The runs record the pid of the worker that ran them.
    for r in sb.runs(&[]) {
        let id = r["id"].as_str().expect("id");
        let pid = if to_db.iter().any(|d| d == id) {
            db.pid()
        } else if to_app.iter().any(|d| d == id) {
            app.pid()
        } else {
            continue;
        };
        assert_eq!(r["pid"], pid, "{r:#}");
    }
    let listed = sb.cairn(&["workers", "--output", "json"]);
    listed.expect(0);
    let listed: Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed:#}");
    assert!(
        listed
            .as_array()
            .expect("list")
            .iter()
            .any(|w| w["labels"]["host"] == "db1" && w["state"] == "running"),
        "{listed:#}"
    );
    stop(app);
    stop(db);
}

/// A runbook whose second step blocks the first time it runs and passes the second time.
fn two_steps(sb: &Sandbox, idempotent: bool) {
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1
name: killed
steps:
  - id: first
    shell: echo once >> {first}
  - id: second
    shell: echo go >> {second}; [ $(wc -l < {second}) -gt 1 ] || sleep 300
    idempotent: {idempotent}
",
            first = sb.file("first.txt"),
            second = sb.file("second.txt"),
        ),
    );
}

/// Submits the two-step runbook to a lone worker and waits until its second step runs.
fn held_mid_run(sb: &Sandbox) -> (Live, String) {
    let a = worker(sb, &[]);
    let id = submit(sb, &["rb.yaml"]);
    eventually("the second step starts", HANG, || {
        sb.exists("second.txt").then_some(())
    });
    (a, id)
}

#[test]
fn a_worker_killed_mid_run_is_resumed_by_another_and_no_succeeded_step_runs_twice() {
    let schema = PgSchema::new("queue_kill");
    let sb = Sandbox::with_state(&schema.url());
    two_steps(&sb, true);
    let (a, id) = held_mid_run(&sb);
    let b = worker(&sb, &[]);
    let b_id = worker_id(&schema, b.pid());
    signal(a.pid(), Signal::SIGKILL);
    let killed_at = Instant::now();
    let a_out = a.finish();
    assert_eq!(a_out.signal, Some(9));
    let q = eventually("the run is taken over and done", HANG, || {
        all_done(&schema, 1)
    });
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "reclaimed and finished only after {took:?}"
    );
    assert_eq!(q[0]["worker"], b_id.as_str(), "{q:#?}");
    assert_eq!(q[0]["claims"], 2);
    assert_eq!(q[0]["outcome"], "succeeded");
    // Resumed, not restarted: the step that had succeeded did not run again.
    assert_eq!(sb.lines("first.txt"), ["once"]);
    assert_eq!(sb.lines("second.txt"), ["go", "go"]);
    let run = sb.show(&id);
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["attempt"], 2, "{run:#}");
    stop(b);
}

#[test]
fn a_stalled_worker_that_wakes_after_a_takeover_stops_and_writes_nothing() {
    let schema = PgSchema::new("queue_stall");
    let sb = Sandbox::with_state(&schema.url());
    two_steps(&sb, true);
    let (a, id) = held_mid_run(&sb);
    let b = worker(&sb, &[]);
    let b_id = worker_id(&schema, b.pid());
    signal(a.pid(), Signal::SIGSTOP);
    let q = eventually("the run is taken over and done", HANG, || {
        all_done(&schema, 1)
    });
    assert_eq!(q[0]["worker"], b_id.as_str(), "{q:#?}");
    // The stalled worker wakes: its heartbeat finds the run taken, it stops it there, and
    // its writes are refused: the run stays as the second worker left it.
    signal(a.pid(), Signal::SIGCONT);
    let a_id = worker_id(&schema, a.pid());
    eventually("the woken worker lets go", HANG, || {
        let w = rows(
            &schema,
            &format!(
                "SELECT 1 AS x FROM cairn_workers WHERE id = '{a_id}' AND heartbeat_at > now() - interval '2 seconds'"
            ),
        );
        (!w.is_empty()).then_some(())
    });
    let a_out = stop(a);
    assert!(a_out.stderr.contains("another worker"), "{a_out}");
    assert_eq!(
        all_done(&schema, 1).expect("still done")[0]["worker"],
        b_id.as_str()
    );
    assert_eq!(sb.lines("first.txt"), ["once"]);
    assert_eq!(sb.show(&id)["run"]["status"], "succeeded");
    assert_eq!(sb.show(&id)["run"]["attempt"], 2);
    stop(b);
}

/// A network cut between one process and the database, made with a database role of its own
/// (a superuser, so that it needs no grants): cut, the role may not log in and its connections
/// are terminated, so every query and reconnection of the process fails until mended.
struct Cut {
    role: String,
    schema: String,
}

impl Cut {
    fn role_for(schema: &PgSchema) -> Cut {
        let role = format!("{}_cut", schema.name);
        crate::common::pg(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN SUPERUSER"
        ));
        Cut {
            role,
            schema: schema.name.clone(),
        }
    }

    /// The store's URL as this role.
    fn url(&self) -> String {
        format!(
            "postgres://{}@127.0.0.1:5432/test?options=-csearch_path%3D{}",
            self.role, self.schema
        )
    }

    fn cut(&self) {
        crate::common::pg(&format!(
            "ALTER ROLE {r} NOLOGIN; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{r}'",
            r = self.role
        ));
    }

    fn mend(&self) {
        crate::common::pg(&format!("ALTER ROLE {} LOGIN", self.role));
    }

    /// Connections of this role now.
    fn connections(&self, schema: &PgSchema) -> usize {
        rows(
            schema,
            &format!(
                "SELECT pid FROM pg_stat_activity WHERE usename = '{}'",
                self.role
            ),
        )
        .len()
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.cut();
        crate::common::pg(&format!(
            "DROP OWNED BY {r}; DROP ROLE IF EXISTS {r}",
            r = self.role
        ));
    }
}

#[test]
fn a_worker_cut_off_the_database_stops_acting_and_another_takes_over() {
    let schema = PgSchema::new("queue_cut");
    let sb = Sandbox::with_state(&schema.url());
    two_steps(&sb, true);
    // The tables are made by the test's own role, not by the one that is cut.
    sb.cairn(&["workers"]).expect(0);
    let cut = Cut::role_for(&schema);
    let leased = |mut c: std::process::Command| {
        c.env("CAIRN_WORKER_LEASE", "3");
        Live::spawn(c)
    };
    let a = leased(sb.command_on(&["worker", "--labels", "host=a,pool=p"], &cut.url()));
    let a_id = worker_id(&schema, a.pid());
    let id = submit(&sb, &["rb.yaml", "--labels", "pool=p"]);
    eventually("the second step starts on a", HANG, || {
        sb.exists("second.txt").then_some(())
    });
    assert!(
        cut.connections(&schema) > 0,
        "a is not connected as its role"
    );
    let b = leased(sb.command(&["worker", "--labels", "host=b,pool=p"]));
    let b_id = worker_id(&schema, b.pid());
    cut.cut();
    let cut_at = Instant::now();
    let q = eventually("the run is taken over by b and done", HANG, || {
        all_done(&schema, 1)
    });
    let took = cut_at.elapsed();
    assert!(took < Duration::from_secs(30), "taken over after {took:?}");
    assert_eq!(q[0]["worker"], b_id.as_str(), "{q:#?}");
    assert_eq!(q[0]["claims"], 2, "{q:#?}");
    assert_eq!(
        cut.connections(&schema),
        0,
        "a reached the database through the cut"
    );
    cut.mend();
    // Back on the network, a is fenced out of the run b finished and takes new work.
    let mine = submit(&sb, &["rb.yaml", "--labels", "host=a"]);
    let q = eventually("a runs a run only it can run", HANG, || {
        all_done(&schema, 2)
    });
    let row = q.iter().find(|r| r["id"] == mine.as_str()).expect("row");
    assert_eq!(row["worker"], a_id.as_str(), "{q:#?}");
    let out = stop(a);
    assert!(out.stderr.contains("no heartbeat for"), "{out}");
    // The first run: resumed by b, not restarted; nothing a did after the cut changed it.
    let run = sb.show(&id);
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["attempt"], 2, "{run:#}");
    assert_eq!(sb.lines("first.txt"), ["once", "once"], "once per run");
    stop(b);
}

#[test]
fn an_in_doubt_step_that_is_not_idempotent_holds_the_taken_over_run_for_a_human() {
    let schema = PgSchema::new("queue_doubt");
    let sb = Sandbox::with_state(&schema.url());
    two_steps(&sb, false);
    let (a, id) = held_mid_run(&sb);
    let b = worker(&sb, &[]);
    signal(a.pid(), Signal::SIGKILL);
    let _ = a.finish();
    let q = eventually("the run is held", HANG, || {
        let q = queue(&schema);
        (q[0]["status"] == "held").then_some(q)
    });
    let outcome = q[0]["outcome"].as_str().expect("outcome");
    assert!(
        outcome.contains("second") && outcome.contains("--rerun"),
        "{outcome}"
    );
    assert_eq!(sb.lines("second.txt"), ["go"], "not run again");
    // A human decides: skip it, and the run ends here.
    sb.resume(&id, &["--skip", "second"]).expect(0);
    assert_eq!(sb.lines("first.txt"), ["once"]);
    stop(b);
}

#[test]
fn sigterm_stops_a_worker_cleanly_and_hands_its_run_back_to_be_resumed() {
    let schema = PgSchema::new("queue_term");
    let sb = Sandbox::with_state(&schema.url());
    two_steps(&sb, true);
    let (a, id) = held_mid_run(&sb);
    let a_id = worker_id(&schema, a.pid());
    let out = stop(a);
    assert!(out.stderr.contains("stopped"), "{out}");
    let q = queue(&schema);
    assert_eq!(q[0]["status"], "queued", "handed back: {q:#?}");
    let w = rows(
        &schema,
        &format!("SELECT stopped_at FROM cairn_workers WHERE id = '{a_id}'"),
    );
    assert!(!w[0]["stopped_at"].is_null());
    let b = worker(&sb, &[]);
    let q = eventually("the run is resumed and done", HANG, || all_done(&schema, 1));
    assert_eq!(q[0]["outcome"], "succeeded");
    assert_eq!(sb.lines("first.txt"), ["once"]);
    assert_eq!(sb.lines("second.txt"), ["go", "go"]);
    assert_eq!(sb.show(&id)["run"]["attempt"], 2);
    stop(b);
}

#[test]
fn a_paused_run_releases_its_worker_and_an_answer_queues_it_again() {
    let schema = PgSchema::new("queue_gate");
    let sb = Sandbox::with_state(&schema.url());
    gated(&sb, true);
    sb.write(
        "plain.yaml",
        "cairn: 1\nname: plain\nsteps:\n  - id: s\n    shell: 'true'\n",
    );
    // One slot: the plain run can only run if the paused one let go of it.
    let w = worker(&sb, &["--concurrency", "1"]);
    let gated = submit(&sb, &["gated.yaml"]);
    eventually("the gated run pauses", HANG, || {
        (queue(&schema)[0]["status"] == "paused").then_some(())
    });
    let plain = submit(&sb, &["plain.yaml"]);
    eventually("the plain run is done", HANG, || {
        queue(&schema)
            .iter()
            .any(|r| r["id"] == plain.as_str() && r["status"] == "done")
            .then_some(())
    });
    // Requeued before an answer (by a prefix of its id, as every run is named): a worker
    // resumes it, it pauses again, nothing after the gate runs.
    let requeued = sb.cairn(&["submit", "--requeue", &gated[..12].to_ascii_lowercase()]);
    requeued.expect(0);
    assert_eq!(requeued.stdout.trim(), gated);
    eventually("the gated run pauses again", HANG, || {
        let q = queue(&schema);
        let r = q.iter().find(|r| r["id"] == gated.as_str())?;
        (r["status"] == "paused" && r["claims"] == 2).then_some(())
    });
    assert_eq!(sb.lines("log.txt"), ["before"]);
    // Answered: the answer queues it again by itself, and a worker takes it past the gate.
    sb.cairn(&["approve", &gated, "gate"])
        .expect(0)
        .says("queued again for a worker to resume");
    eventually("the gated run is done", HANG, || {
        queue(&schema)
            .iter()
            .any(|r| r["id"] == gated.as_str() && r["status"] == "done")
            .then_some(())
    });
    assert_eq!(sb.lines("log.txt"), ["before", "after"]);
    assert_eq!(sb.show(&gated)["run"]["status"], "succeeded");
    // Only a paused or held run can be requeued.
    sb.cairn(&["submit", "--requeue", &gated]).expect(2);
    stop(w);
}

/// `cairn serve` over the queue's store, with `alice` an approver by a bearer token: the base
/// URL it listens on.
fn console(sb: &Sandbox) -> (Live, String) {
    use sha2::Digest as _;
    let hash: String = sha2::Sha256::digest(b"alice-token")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    sb.write("tokens", format!("alice approver sha256:{hash}\n"));
    let tokens = sb.path().join("tokens");
    let mut server = Live::spawn(sb.command(&[
        "serve",
        "--auth",
        "token",
        "--tokens",
        tokens.to_str().expect("utf-8 path"),
        "--listen",
        "127.0.0.1:0",
    ]));
    let base = server.next_line().trim().trim_end_matches('/').to_string();
    assert!(base.starts_with("http://"), "not a URL: {base}");
    (server, base)
}

/// POST `url` with alice's token: the status and body.
fn post_as_alice(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let res = reqwest::Client::new()
            .post(url)
            .bearer_auth("alice-token")
            .send()
            .await
            .expect("POST");
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    })
}

/// `gated.yaml`: a step, a gate (which the run's starter may answer with `self_approval`), a
/// step; each step writes its id to `log.txt`.
fn gated(sb: &Sandbox, self_approval: bool) {
    let log = sb.file("log.txt");
    sb.write(
        "gated.yaml",
        format!(
            "cairn: 1
name: gated
steps:
  - id: before
    shell: echo before >> {log}
  - id: gate
    approval: {{ message: go?, allow_self_approval: {self_approval} }}
  - id: after
    shell: echo after >> {log}
"
        ),
    );
}

#[test]
fn an_answer_given_in_the_console_queues_a_worker_paused_run_again() {
    let schema = PgSchema::new("queue_console_answer");
    let sb = Sandbox::with_state(&schema.url());
    gated(&sb, false);
    let w = worker(&sb, &["--labels", "host=db1"]);
    let id = worker_id(&schema, w.pid());
    let gated = submit(&sb, &["gated.yaml", "--labels", "host=db1"]);
    eventually("the gated run pauses", HANG, || {
        (queue(&schema)[0]["status"] == "paused").then_some(())
    });
    let (server, base) = console(&sb);
    let (status, body) = post_as_alice(&format!("{base}/api/runs/{gated}/steps/gate/approve"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("queued again for a worker to resume"),
        "{body}"
    );
    // The worker, not the console's host, takes it past the gate: the queue saw a second claim.
    let done = eventually("the gated run is done", HANG, || {
        queue(&schema)
            .into_iter()
            .find(|r| r["id"] == gated.as_str() && r["status"] == "done")
    });
    assert_eq!(done["claims"], 2, "{done}");
    assert_eq!(done["worker"], id.as_str(), "{done}");
    assert_eq!(sb.lines("log.txt"), ["before", "after"]);
    assert_eq!(sb.show(&gated)["run"]["status"], "succeeded");
    // The audit trail says where the run went.
    let said = rows(
        &schema,
        &format!("SELECT detail FROM cairn_actions WHERE run_id = '{gated}' AND action = 'resume'"),
    );
    assert!(
        said.iter().any(|r| r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("queued again"))),
        "{said:?}"
    );
    drop(server);
    stop(w);
}

#[test]
fn a_console_answer_to_a_run_already_queued_again_leaves_it_to_the_workers() {
    let schema = PgSchema::new("queue_console_queued");
    let sb = Sandbox::with_state(&schema.url());
    gated(&sb, false);
    let w = worker(&sb, &[]);
    let gated = submit(&sb, &["gated.yaml"]);
    eventually("the gated run pauses", HANG, || {
        (queue(&schema)[0]["status"] == "paused").then_some(())
    });
    stop(w);
    // Queued again by hand before the answer, with no worker up to take it.
    submit(&sb, &["--requeue", &gated]);
    let (server, base) = console(&sb);
    let (status, body) = post_as_alice(&format!("{base}/api/runs/{gated}/steps/gate/approve"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("queued in the queue: a worker resumes it"),
        "{body}"
    );
    // Nothing ran here: the run waits for a worker.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sb.lines("log.txt"),
        ["before"],
        "the console resumed the run itself"
    );
    assert_eq!(queue(&schema)[0]["status"], "queued");
    let w = worker(&sb, &[]);
    let done = eventually("a worker finishes it", HANG, || {
        queue(&schema).into_iter().find(|r| r["status"] == "done")
    });
    assert_eq!(done["outcome"], "succeeded", "{done}");
    assert_eq!(sb.lines("log.txt"), ["before", "after"]);
    drop(server);
    stop(w);
}

/// The server's connections of one `cairn` process (each names its pid in
/// `application_name`).
fn connections_of(schema: &PgSchema, pid: i32) -> usize {
    rows(
        schema,
        &format!("SELECT pid FROM pg_stat_activity WHERE application_name = 'cairn pid {pid}'"),
    )
    .len()
}

#[test]
fn a_worker_keeps_to_its_pool_of_connections() {
    let schema = PgSchema::new("queue_pool");
    let sb = Sandbox::with_state(&schema.url());
    // Four steps at once, each long enough to be seen.
    let steps: String = (0..4)
        .map(|i| format!("  - id: s{i}\n    shell: sleep 1\n"))
        .collect();
    sb.write(
        "wide.yaml",
        format!("cairn: 1\nname: wide\nsteps:\n{steps}"),
    );
    // The default for one run at a time: 3 pooled, plus checkpoints and LISTEN.
    let w = worker(&sb, &[]);
    let pid = w.pid();
    worker_id(&schema, pid);
    let runs: Vec<String> = (0..3).map(|_| submit(&sb, &["wide.yaml"])).collect();
    let deadline = Instant::now() + HANG;
    let mut most = 0;
    while all_done(&schema, runs.len()).is_none() {
        assert!(Instant::now() < deadline, "the runs never ended");
        most = most.max(connections_of(&schema, pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        (1..=5).contains(&most),
        "the worker held {most} connections"
    );
    stop(w);
    // A pool of one still runs everything (nothing waits on a connection it holds itself).
    let w = worker(&sb, &["--pool", "1"]);
    let pid = w.pid();
    let more: Vec<String> = (0..3).map(|_| submit(&sb, &["wide.yaml"])).collect();
    let mut most = 0;
    while all_done(&schema, runs.len() + more.len()).is_none() {
        assert!(Instant::now() < deadline, "the runs never ended");
        most = most.max(connections_of(&schema, pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        (1..=3).contains(&most),
        "the worker held {most} connections"
    );
    for r in runs.iter().chain(&more) {
        assert_eq!(sb.show(r)["run"]["status"], "succeeded", "run {r}");
    }
    stop(w);
}

#[test]
fn submit_refuses_a_store_that_is_not_postgresql_and_an_invalid_runbook() {
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        "cairn: 1\nname: x\nsteps:\n  - id: s\n    shell: 'true'\n",
    );
    let out = sb.cairn(&["submit", "rb.yaml"]);
    out.expect(2).says("PostgreSQL");
    assert!(out.stdout.is_empty());
    sb.cairn(&["worker"]).expect(2).says("PostgreSQL");
    let schema = PgSchema::new("queue_refuse");
    let pg = Sandbox::with_state(&schema.url());
    pg.write(
        "bad.yaml",
        "cairn: 1\nname: x\nsteps:\n  - id: s\n    nope: 1\n",
    );
    pg.cairn(&["submit", "bad.yaml"]).expect(2);
    pg.write(
        "rb.yaml",
        "cairn: 1\nname: x\nsteps:\n  - id: s\n    shell: 'true'\n",
    );
    pg.cairn(&["submit", "rb.yaml", "--set", "unknown=1"])
        .expect(2);
    pg.cairn(&["submit", "rb.yaml", "--labels", "host"])
        .expect(2);
    assert!(rows(&schema, "SELECT id FROM cairn_queue").is_empty());
}

/// Every `cairn submit` line of the schedule recipes in docs/workers.md (systemd `ExecStart=`,
/// cron, Kubernetes `args`), run as written with the repository's runbooks in place of
/// `/srv/runbooks`: each queues what it says.
#[test]
fn the_schedule_recipes_submit_what_they_say() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/workers.md")).expect("docs/workers.md");
    let runbooks = std::fs::canonicalize(root.join("runbooks")).expect("runbooks");
    let runbooks = runbooks.to_str().expect("utf-8");
    let mut lines: Vec<Vec<String>> = doc
        .lines()
        .filter_map(|l| l.split_once("/usr/local/bin/cairn submit "))
        .map(|(_, rest)| rest.split_whitespace().map(str::to_string).collect())
        .collect();
    // The Kubernetes CronJob's args list.
    lines.extend(
        doc.lines()
            .filter_map(|l| l.trim().strip_prefix("args: [submit, "))
            .map(|rest| {
                rest.trim_end_matches(']')
                    .split(", ")
                    .map(str::to_string)
                    .collect()
            }),
    );
    assert!(lines.len() >= 7, "the recipes: {lines:?}");
    let schema = PgSchema::new("queue_recipes");
    let sb = Sandbox::with_state(&schema.url());
    for line in &lines {
        let args: Vec<String> = line
            .iter()
            .map(|a| a.replace("/srv/runbooks", runbooks))
            .collect();
        let mut all = vec!["submit"];
        all.extend(args.iter().map(String::as_str));
        let out = sb.cairn(&all);
        out.expect(0);
        let id = out.stdout.trim();
        let row = &rows(
            &schema,
            &format!("SELECT path, labels, sets, status FROM cairn_queue WHERE id = '{id}'"),
        )[0];
        assert_eq!(row["path"], args[0].as_str(), "{line:?}");
        assert_eq!(row["status"], "queued");
        let wants_db1 = args.iter().any(|a| a == "host=db1");
        assert_eq!(row["labels"]["host"] == "db1", wants_db1, "{line:?}: {row}");
        let incremental = args.iter().any(|a| a == "incremental=true");
        assert_eq!(
            row["sets"] == serde_json::json!([["incremental", "true"]]),
            incremental,
            "{line:?}: {row}"
        );
    }
}

/// A worker killed after its run failed and before it recorded that in the queue leaves the
/// queued run claimed with a stale heartbeat (made here by hand): the next worker records the
/// run's end and does not resume it, which would run the failed step again.
#[test]
fn a_taken_over_run_that_had_already_failed_is_not_run_again() {
    let schema = PgSchema::new("queue_failed");
    let sb = Sandbox::with_state(&schema.url());
    let tries = sb.file("tries.txt");
    sb.write(
        "rb.yaml",
        format!(
            "cairn: 1\nname: fails\nsteps:\n  - id: boom\n    shell: echo try >> {tries}; exit 3\n"
        ),
    );
    let a = worker(&sb, &[]);
    let id = submit(&sb, &["rb.yaml"]);
    let q = eventually("the run fails", HANG, || all_done(&schema, 1));
    assert_eq!(q[0]["outcome"], "failed");
    stop(a);
    crate::common::pg(&format!(
        "UPDATE {}.cairn_queue SET status = 'claimed', outcome = NULL, finished_at = NULL, \
         heartbeat_at = now() - interval '1 minute' WHERE id = '{id}'",
        schema.name
    ));
    let b = worker(&sb, &[]);
    let q = eventually("the run is recorded again", HANG, || all_done(&schema, 1));
    assert_eq!(q[0]["outcome"], "failed");
    assert_eq!(q[0]["claims"], 2);
    assert_eq!(sb.lines("tries.txt"), ["try"]);
    assert_eq!(sb.show(&id)["run"]["attempt"], 1);
    stop(b);
}

/// A queued row edited by hand into something unreadable is held with the reason, once, and
/// the worker goes on with the next run.
#[test]
fn an_unreadable_queued_run_is_held_and_the_worker_goes_on() {
    let schema = PgSchema::new("queue_unreadable");
    let sb = Sandbox::with_state(&schema.url());
    sb.write(
        "rb.yaml",
        "cairn: 1\nname: x\nsteps:\n  - id: s\n    shell: 'true'\n",
    );
    let bad = submit(&sb, &["rb.yaml"]);
    let good = submit(&sb, &["rb.yaml"]);
    crate::common::pg(&format!(
        "UPDATE {}.cairn_queue SET sets = '{{\"not\": \"a list\"}}' WHERE id = '{bad}'",
        schema.name
    ));
    let w = worker(&sb, &[]);
    let q = eventually("the good run is done", HANG, || {
        let q = queue(&schema);
        q.iter()
            .any(|r| r["id"] == good.as_str() && r["status"] == "done")
            .then_some(q)
    });
    let held = q.iter().find(|r| r["id"] == bad.as_str()).expect("bad row");
    assert_eq!(held["status"], "held", "{q:#?}");
    assert!(
        held["outcome"].as_str().is_some_and(|o| o.contains("sets")),
        "{held}"
    );
    assert_eq!(held["claims"], 1);
    stop(w);
}

/// The queued id is the top-level run's only: a `uses` sub-run of a queued run gets an id of
/// its own.
#[test]
fn a_sub_run_of_a_queued_run_has_its_own_id() {
    let schema = PgSchema::new("queue_subrun");
    let sb = Sandbox::with_state(&schema.url());
    sb.write(
        "child.yaml",
        "cairn: 1\nname: child\nsteps:\n  - id: c\n    shell: 'true'\n",
    );
    sb.write(
        "parent.yaml",
        "cairn: 1\nname: parent\nsteps:\n  - id: sub\n    uses: child.yaml\n",
    );
    let w = worker(&sb, &[]);
    let id = submit(&sb, &["parent.yaml"]);
    let q = eventually("the run is done", HANG, || all_done(&schema, 1));
    assert_eq!(q[0]["outcome"], "succeeded", "{q:#?}");
    let runs = rows(&schema, "SELECT id, parent_run FROM cairn_runs ORDER BY id");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let child = runs.iter().find(|r| r["id"] != id.as_str()).expect("child");
    assert_eq!(child["parent_run"], id.as_str());
    stop(w);
}
