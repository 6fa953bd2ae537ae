//! The one test suite every backend runs. Each function gets a fresh, empty store; the backend
//! test files instantiate them all through `store_tests!`.

mod locks;

use std::sync::Arc;

use cairn_state::{
    Action, Approval, Claim, Decision, ListedRun, RunCursor, RunFilter, RunRecord, RunStatus,
    StateError, StepDef, StepRecord, StepStatus, Store, current_host, now,
};
use chrono::TimeDelta;
use serde_json::json;

pub use locks::*;

/// Generates one `#[tokio::test]` per suite function; `$with` is an async fn taking the
/// suite function and running it against a fresh store of the backend.
macro_rules! store_tests {
    ($with:ident) => {
        store_tests!(@each $with:
            runs_create_get_list, run_update, prefix_lookup, steps_upsert_by_item,
            json_round_trip, step_defs_replaced, heartbeat_revives_and_renews, approvals,
            claims_fence_writes, claims_race_one_wins, sub_runs_by_parent, sub_runs_fenced_by_their_parent, a_circle_of_parents_ends_the_fencing_walk,
            interrupted_detection, remote_runs_judged_by_their_counter, locks_acquire_refuse_release, locks_finished_and_paused,
            locks_dead_holders, put_steps_together, put_steps_long_and_repeated, refused_claims_change_nothing,
            lock_release_is_fenced, runs_paged_by_cursor, actions_audit_trail, waiting_gates_of_paused_runs,
            runs_filtered_by_label);
    };
    (@each $with:ident: $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $with(suite::$name).await;
            }
        )+
    };
}

/// A running run of `runbook` on this host and process, started `ago` before now.
pub fn run(runbook: &str, ago: TimeDelta) -> RunRecord {
    let mut r = RunRecord::start(
        runbook,
        format!("runbooks/{runbook}.yaml"),
        "h1",
        json!({}),
        "sre",
    );
    r.started_at = now() - ago;
    r
}

/// The pid of a process that has exited and been reaped.
pub fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait for true");
    pid
}

fn def(id: &str, needs: &[&str]) -> StepDef {
    StepDef {
        step_id: id.to_string(),
        def_hash: format!("hash-{id}"),
        needs: needs.iter().map(|s| s.to_string()).collect(),
    }
}

/// A claim on a run that does not exist.
fn no_claim(id: &str) -> Claim {
    Claim {
        run_id: id.to_string(),
        attempt: 1,
    }
}

async fn create(store: &Arc<dyn Store>, run: &RunRecord) {
    store.create_run(run, &[]).await.expect("create_run");
}

async fn get(store: &Arc<dyn Store>, id: &str) -> RunRecord {
    store
        .get_run(id)
        .await
        .expect("get_run")
        .expect("run exists")
}

async fn ids(store: &Arc<dyn Store>, filter: RunFilter) -> Vec<String> {
    let runs = store.list_runs(&filter).await.expect("list_runs");
    runs.into_iter().map(|r| r.id).collect()
}

pub async fn runs_create_get_list(store: Arc<dyn Store>) {
    let old = run("backup", TimeDelta::hours(3));
    let mid = run("restore", TimeDelta::hours(2));
    let new = run("backup", TimeDelta::hours(1));
    // Created out of order: the listing sorts by started_at, not by insertion.
    for r in [&mid, &new, &old] {
        create(&store, r).await;
    }
    assert_eq!(get(&store, &mid.id).await, mid);
    assert_eq!(store.get_run("nope").await.expect("get_run"), None);

    let all = ids(&store, RunFilter::default()).await;
    assert_eq!(all, [new.id.clone(), mid.id.clone(), old.id.clone()]);
    let backups = RunFilter {
        runbook: Some("backup".into()),
        ..RunFilter::default()
    };
    assert_eq!(ids(&store, backups).await, [new.id.clone(), old.id.clone()]);
    let limited = RunFilter {
        limit: Some(2),
        ..RunFilter::default()
    };
    assert_eq!(ids(&store, limited).await, [new.id.clone(), mid.id.clone()]);

    let mut failed = old.clone();
    failed.status = RunStatus::Failed;
    failed.finished_at = Some(now());
    store.update_run(&failed).await.expect("update_run");
    let by_status = RunFilter {
        status: Some(RunStatus::Failed),
        ..RunFilter::default()
    };
    assert_eq!(ids(&store, by_status).await, vec![old.id.clone()]);
    let none = RunFilter {
        runbook: Some("restore".into()),
        status: Some(RunStatus::Failed),
        labels: Vec::new(),
        limit: None,
    };
    assert!(ids(&store, none).await.is_empty());

    let again = store.create_run(&mid, &[]).await;
    assert!(
        matches!(&again, Err(StateError::RunExists(id)) if *id == mid.id),
        "{again:?}"
    );
}

pub async fn run_update(store: Arc<dyn Store>) {
    let mut r = run("backup", TimeDelta::minutes(1));
    create(&store, &r).await;
    r.status = RunStatus::Succeeded;
    r.finished_at = Some(now());
    r.outputs = Some(json!({ "dump": "/backups/x.dump", "entities": 42 }));
    r.error = Some("step `verify` failed".into());
    r.pid = 4242;
    r.host = "other-host".into();
    r.content_hash = "h2".into();
    store.update_run(&r).await.expect("update_run");
    r.heartbeat_seq = 1; // the store counts every write of the run by its process
    assert_eq!(get(&store, &r.id).await, r);

    // started_at is fixed at creation and heartbeat_at never moves back.
    let mut stale = r.clone();
    stale.started_at = now() - TimeDelta::days(9);
    stale.heartbeat_at = now() - TimeDelta::days(9);
    store.update_run(&stale).await.expect("update_run");
    let got = get(&store, &r.id).await;
    assert_eq!(
        (got.started_at, got.heartbeat_at),
        (r.started_at, r.heartbeat_at)
    );

    let mut ghost = run("backup", TimeDelta::zero());
    ghost.id = "GHOST".into();
    let e = store.update_run(&ghost).await;
    assert!(matches!(e, Err(StateError::RunNotFound(_))), "{e:?}");
}

pub async fn prefix_lookup(store: Arc<dyn Store>) {
    let mut a1 = run("a", TimeDelta::zero());
    a1.id = "01HAAA0001".into();
    let mut a2 = run("a", TimeDelta::zero());
    a2.id = "01HAAA0002".into();
    let mut b = run("b", TimeDelta::zero());
    b.id = "01HBBB0001".into();
    for r in [&a1, &a2, &b] {
        create(&store, r).await;
    }
    assert_eq!(get(&store, "01HB").await.id, b.id);
    assert_eq!(
        get(&store, "01hbbb").await.id,
        b.id,
        "prefixes are case-insensitive"
    );
    assert_eq!(get(&store, "01HAAA0002").await.id, a2.id);
    assert_eq!(store.get_run("01HC").await.expect("get_run"), None);
    assert_eq!(store.get_run("").await.expect("get_run"), None);
    match store.get_run("01HAAA").await {
        Err(StateError::AmbiguousRunId { prefix, candidates }) => {
            assert_eq!(prefix, "01HAAA");
            assert_eq!(candidates, [a1.id.clone(), a2.id.clone()]);
            let e = StateError::AmbiguousRunId { prefix, candidates }.to_string();
            assert_eq!(
                e,
                "run id prefix `01HAAA` is ambiguous: it matches 01HAAA0001, 01HAAA0002"
            );
        }
        other => panic!("expected an ambiguity, got {other:?}"),
    }
}

pub async fn steps_upsert_by_item(store: Arc<dyn Store>) {
    let r = run("fan-out", TimeDelta::zero());
    create(&store, &r).await;
    let mut whole = StepRecord::new(&r.id, "api_health", None, "d1");
    whole.status = StepStatus::Running;
    whole.started_at = Some(now());
    store.put_step(&r.claim(), &whole).await.expect("put_step");
    let mut items = Vec::new();
    for i in 0..3 {
        let mut s = StepRecord::new(&r.id, "api_health", Some(i), "d1");
        s.status = StepStatus::Running;
        s.attempt = 1;
        store.put_step(&r.claim(), &s).await.expect("put_step");
        items.push(s);
    }
    let mut other = StepRecord::new(&r.id, "report", None, "d2");
    other.idempotent = false;
    other.log_path = Some(".cairn/logs/report.log".into());
    store.put_step(&r.claim(), &other).await.expect("put_step");

    // Re-writing item 1 and the whole step replaces them in place.
    items[1].status = StepStatus::Failed;
    items[1].attempt = 2;
    items[1].finished_at = Some(now());
    items[1].error = Some("HTTP 503 from http://localhost:8443/health".into());
    store
        .put_step(&r.claim(), &items[1])
        .await
        .expect("put_step");
    whole.status = StepStatus::Failed;
    store.put_step(&r.claim(), &whole).await.expect("put_step");

    let got = store.steps(&r.id).await.expect("steps");
    let want = vec![
        whole,
        items[0].clone(),
        items[1].clone(),
        items[2].clone(),
        other,
    ];
    assert_eq!(got, want);
    assert!(store.steps("nope").await.expect("steps").is_empty());

    let orphan = StepRecord::new("nope", "x", None, "d");
    let e = store.put_step(&no_claim("nope"), &orphan).await;
    assert!(
        matches!(&e, Err(StateError::RunNotFound(id)) if id == "nope"),
        "{e:?}"
    );
}

pub async fn json_round_trip(store: Arc<dyn Store>) {
    let value = json!({
        "rows": [{ "n": 1_250_000, "name": "Zoë 🚀 «日本語»", "ok": true, "none": null }],
        "nested": { "deep": { "list": [1, -2, 3.5, [], {}], "empty": "" } },
        "big": i64::MAX, "neg": i64::MIN, "float": 0.1, "quote": "a\"b\\c\nd\te",
        "row_count": 1
    });
    let mut r = run("json", TimeDelta::zero());
    r.inputs = json!({ "actor_id": "client_7", "dirs": ["/a", "/b"], "n": 3 });
    r.outputs = Some(value.clone());
    create(&store, &r).await;
    assert_eq!(get(&store, &r.id).await, r);

    let mut s = StepRecord::new(&r.id, "q", Some(0), "d");
    s.result = Some(value.clone());
    s.outputs = Some(json!("just a string"));
    store.put_step(&r.claim(), &s).await.expect("put_step");
    let got = store.steps(&r.id).await.expect("steps");
    assert_eq!(got, [s.clone()]);
    s.outputs = Some(json!(null));
    s.result = Some(json!([]));
    store.put_step(&r.claim(), &s).await.expect("put_step");
    assert_eq!(store.steps(&r.id).await.expect("steps"), [s]);
}

pub async fn step_defs_replaced(store: Arc<dyn Store>) {
    let r = run("dag", TimeDelta::zero());
    let first = vec![def("a", &[]), def("b", &["a"]), def("c", &["a", "b"])];
    store.create_run(&r, &first).await.expect("create_run");
    assert_eq!(store.step_defs(&r.id).await.expect("step_defs"), first);
    let second = vec![def("a", &[]), def("b2", &["a"])];
    store
        .set_step_defs(&r.claim(), &second)
        .await
        .expect("set_step_defs");
    assert_eq!(store.step_defs(&r.id).await.expect("step_defs"), second);
    store
        .set_step_defs(&r.claim(), &[])
        .await
        .expect("set_step_defs");
    assert!(store.step_defs(&r.id).await.expect("step_defs").is_empty());
    let e = store.set_step_defs(&no_claim("nope"), &first).await;
    assert!(matches!(e, Err(StateError::RunNotFound(_))), "{e:?}");
}

pub async fn heartbeat_revives_and_renews(store: Arc<dyn Store>) {
    // A run on another host, last seen 5 minutes ago, heartbeats before anyone looks.
    let mut r = run("hb", TimeDelta::minutes(10));
    r.host = "elsewhere".into();
    r.heartbeat_at = now() - TimeDelta::minutes(5);
    create(&store, &r).await;
    let before = now();
    store.heartbeat(&r.claim()).await.expect("heartbeat");
    let got = get(&store, &r.id).await;
    assert_eq!(got.status, RunStatus::Running);
    assert!(
        got.heartbeat_at >= before,
        "{} < {before}",
        got.heartbeat_at
    );

    let e = store.heartbeat(&no_claim("nope")).await;
    assert!(matches!(e, Err(StateError::RunNotFound(_))), "{e:?}");
}

pub async fn approvals(store: Arc<dyn Store>) {
    let r = run("gate", TimeDelta::zero());
    create(&store, &r).await;
    assert!(store.approvals(&r.id).await.expect("approvals").is_empty());
    let rejected = Approval {
        run_id: r.id.clone(),
        step_id: "confirm_dns".into(),
        decision: Decision::Rejected,
        by: "alice".into(),
        at: now() - TimeDelta::minutes(1),
        comment: Some("the DNS change is understood".into()),
        host: Some("bastion-1".into()),
        tty: Some("/dev/pts/3".into()),
    };
    let approved = Approval {
        decision: Decision::Approved,
        by: "auto:bob".into(),
        at: now(),
        comment: None,
        host: None,
        tty: None,
        ..rejected.clone()
    };
    store
        .record_approval(&rejected)
        .await
        .expect("record_approval");
    store
        .record_approval(&approved)
        .await
        .expect("record_approval");
    assert_eq!(
        store.approvals(&r.id).await.expect("approvals"),
        [rejected.clone(), approved]
    );
    let orphan = Approval {
        run_id: "nope".into(),
        ..rejected
    };
    let e = store.record_approval(&orphan).await;
    assert!(matches!(e, Err(StateError::RunNotFound(_))), "{e:?}");
}

pub async fn interrupted_detection(store: Arc<dyn Store>) {
    let mut dead_here = run("i", TimeDelta::minutes(4));
    dead_here.pid = dead_pid();
    let mut stale_there = run("i", TimeDelta::minutes(3));
    stale_there.host = "elsewhere".into();
    stale_there.heartbeat_at = now() - TimeDelta::minutes(3);
    let mut fresh_there = run("i", TimeDelta::minutes(2));
    fresh_there.host = "elsewhere".into();
    fresh_there.pid = dead_pid(); // meaningless on another host
    let alive_here = run("i", TimeDelta::minutes(1));
    let mut paused = run("i", TimeDelta::minutes(5));
    paused.status = RunStatus::Paused;
    paused.pid = dead_pid();
    for r in [&dead_here, &stale_there, &fresh_there, &alive_here, &paused] {
        create(&store, r).await;
    }
    assert_eq!(alive_here.host, current_host());
    assert_eq!(
        get(&store, &dead_here.id).await.status,
        RunStatus::Interrupted
    );
    let interrupted = RunFilter {
        status: Some(RunStatus::Interrupted),
        ..RunFilter::default()
    };
    // A run of another host whose heartbeat looks minutes old is not judged by that time (the
    // hosts' clocks need not agree): this host has not yet seen its counter stand still.
    assert_eq!(ids(&store, interrupted).await, [dead_here.id.clone()]);
    let running = RunFilter {
        status: Some(RunStatus::Running),
        ..RunFilter::default()
    };
    assert_eq!(
        ids(&store, running).await,
        [
            alive_here.id.clone(),
            fresh_there.id.clone(),
            stale_there.id.clone()
        ]
    );
    assert_eq!(get(&store, &paused.id).await.status, RunStatus::Paused);
    // On this host no clock decides: a live process whose last heartbeat looks a day old (the
    // reader's clock jumped forward) is running; a live pid with another start time is not the
    // run's process (the pid was reused) and the run is interrupted.
    let mut jumped = run("j", TimeDelta::days(1));
    jumped.heartbeat_at = now() - TimeDelta::days(1);
    let mut reused = run("j", TimeDelta::minutes(1));
    reused.pid_start = reused.pid_start.map(|t| t + 1);
    for r in [&jumped, &reused] {
        create(&store, r).await;
    }
    assert_eq!(get(&store, &jumped.id).await.status, RunStatus::Running);
    assert_eq!(get(&store, &reused.id).await.status, RunStatus::Interrupted);
    // Seen once, it stays interrupted, even if its pid came back: resuming is what brings it
    // back.
    assert_eq!(
        get(&store, &dead_here.id).await.status,
        RunStatus::Interrupted
    );
}

pub async fn remote_runs_judged_by_their_counter(store: Arc<dyn Store>) {
    // A run of another host whose last heartbeat looks a day old to this host (a clock jumped,
    // or the two disagree): its first sight from here cannot judge it, however old it looks.
    let mut r = run("far", TimeDelta::days(1));
    r.host = "elsewhere.example".into();
    r.pid = dead_pid(); // meaningless on another host
    r.heartbeat_at = now() - TimeDelta::days(1);
    r.heartbeat_seq = 41; // the store keeps its own count
    create(&store, &r).await;
    let first = get(&store, &r.id).await;
    assert_eq!(first.status, RunStatus::Running);
    assert_eq!(first.heartbeat_seq, 0);
    let wait = first.unconfirmed.expect("not yet confirmed from here");
    assert!(wait <= cairn_state::stale_after(), "{wait:?}");
    let listed = store.list_runs(&RunFilter::default()).await.expect("list");
    assert_eq!(listed[0].status, RunStatus::Running);
    assert!(listed[0].unconfirmed.is_some(), "{listed:?}");
    // A refused resume says how long to wait.
    let holder = first.holder().to_string();
    assert!(holder.contains("cannot be told yet"), "{holder}");
    // Its counter moves: seen alive from here.
    store.heartbeat(&r.claim()).await.expect("heartbeat");
    let moved = get(&store, &r.id).await;
    assert_eq!((moved.status, moved.heartbeat_seq), (RunStatus::Running, 1));
    assert_eq!(moved.unconfirmed, None);
    assert!(
        moved.holder().to_string().ends_with('Z'),
        "{}",
        moved.holder()
    );
    // Still since: counting down from the lease again, never judged within it.
    let still = get(&store, &r.id).await;
    assert_eq!(still.status, RunStatus::Running);
    assert!(still.unconfirmed.is_some_and(|w| w <= wait));
    // Every write of the run by its process moves the counter.
    let mut ended = still.clone();
    ended.status = RunStatus::Paused;
    store.update_run(&ended).await.expect("update_run");
    let paused = get(&store, &r.id).await;
    assert_eq!(
        (paused.status, paused.heartbeat_seq),
        (RunStatus::Paused, 2)
    );
    assert_eq!(paused.unconfirmed, None);
    let mut again = paused.clone();
    again.attempt += 1;
    again.status = RunStatus::Running;
    assert_eq!(store.claim_run(&again).await.expect("claim"), Ok(()));
    assert_eq!(get(&store, &r.id).await.heartbeat_seq, 3);
}

/// A resume claims the next attempt; writes under an older claim are refused and name the
/// holder, and nothing of them is kept.
pub async fn claims_fence_writes(store: Arc<dyn Store>) {
    let mut r = run("fenced", TimeDelta::minutes(1));
    store
        .create_run(&r, &[def("a", &[])])
        .await
        .expect("create_run");
    // A running run cannot be claimed.
    let mut b = r.clone();
    b.attempt = 2;
    b.pid = 111;
    b.host = "host-b".into();
    b.claimed_at = now();
    let held = store.claim_run(&b).await.expect("claim_run");
    let holder = held.expect_err("a running run is refused");
    assert_eq!(
        (holder.attempt, holder.pid, holder.status),
        (1, r.pid, RunStatus::Running)
    );
    r.status = RunStatus::Failed;
    store.update_run(&r).await.expect("update_run");

    b.status = RunStatus::Running;
    store
        .claim_run(&b)
        .await
        .expect("claim_run")
        .expect("b claims attempt 2");
    let got = get(&store, &r.id).await;
    assert_eq!(
        (got.attempt, got.pid, got.host.as_str(), got.claimed_at),
        (2, 111, "host-b", b.claimed_at)
    );
    // A second claim of the same attempt loses and names the winner.
    let mut c = b.clone();
    c.pid = 222;
    let lost = store.claim_run(&c).await.expect("claim_run");
    let holder = lost.expect_err("attempt 2 is taken");
    assert_eq!(
        (
            holder.attempt,
            holder.pid,
            holder.host.as_str(),
            holder.since
        ),
        (2, 111, "host-b", b.claimed_at)
    );
    assert!(
        holder
            .to_string()
            .contains("by pid 111 on host host-b since"),
        "{holder}"
    );

    // The first process's writes are all refused now.
    let mut s = StepRecord::new(&r.id, "a", None, "hash-a");
    s.status = StepStatus::Succeeded;
    let fenced = |e: Result<(), StateError>| match e {
        Err(StateError::Fenced {
            attempt, holder, ..
        }) => assert_eq!((attempt, holder.attempt, holder.pid), (1, 2, 111)),
        other => panic!("expected a fenced write, got {other:?}"),
    };
    fenced(store.put_step(&r.claim(), &s).await);
    fenced(store.heartbeat(&r.claim()).await);
    fenced(store.update_run(&r).await);
    fenced(store.set_step_defs(&r.claim(), &[]).await);
    assert!(store.steps(&r.id).await.expect("steps").is_empty());
    assert_eq!(store.step_defs(&r.id).await.expect("step_defs").len(), 1);
    let e = store.put_step(&r.claim(), &s).await.expect_err("fenced");
    assert!(
        e.to_string()
            .starts_with(&format!("lost the claim on run {} (attempt 1): run ", r.id)),
        "{e}"
    );
    // The holder's writes go through.
    store.put_step(&b.claim(), &s).await.expect("put_step");
    store.heartbeat(&b.claim()).await.expect("heartbeat");
    assert_eq!(store.steps(&r.id).await.expect("steps"), [s]);

    let mut ghost = b.clone();
    ghost.id = "GHOST".into();
    let e = store.claim_run(&ghost).await;
    assert!(matches!(e, Err(StateError::RunNotFound(_))), "{e:?}");
}

/// Many claims of the same attempt at once: exactly one wins.
pub async fn claims_race_one_wins(store: Arc<dyn Store>) {
    let mut r = run("race", TimeDelta::minutes(1));
    r.status = RunStatus::Paused;
    create(&store, &r).await;
    let mut tasks = tokio::task::JoinSet::new();
    for pid in 1..=8u32 {
        let (store, mut mine) = (store.clone(), r.clone());
        mine.attempt = 2;
        mine.status = RunStatus::Running;
        // Other hosts, so that liveness does not judge these pids on this one.
        mine.host = format!("racer-{pid}");
        mine.claimed_at = now();
        tasks.spawn(async move { store.claim_run(&mine).await.map(|x| x.is_ok()) });
    }
    let mut won = 0;
    while let Some(done) = tasks.join_next().await {
        if done.expect("task").expect("claim_run") {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one claim wins");
    let got = get(&store, &r.id).await;
    assert_eq!((got.attempt, got.status), (2, RunStatus::Running));
    assert!(got.host.starts_with("racer-"), "{}", got.host);
}

/// Sub-runs are found by their parent, each with the step (or item) that started it.
pub async fn sub_runs_by_parent(store: Arc<dyn Store>) {
    let parent = run("parent", TimeDelta::minutes(3));
    create(&store, &parent).await;
    let mut kids = Vec::new();
    for k in 0..3 {
        let mut child = run("child", TimeDelta::minutes(2 - k));
        child.parent_run = Some(parent.id.clone());
        child.parent_step = Some(format!("square[{k}]"));
        create(&store, &child).await;
        kids.push(child);
    }
    create(&store, &run("child", TimeDelta::zero())).await;
    let got = store.sub_runs(&parent.id).await.expect("sub_runs");
    assert_eq!(got, kids);
    assert!(store.sub_runs("nope").await.expect("sub_runs").is_empty());
}

/// A sub-run is created and taken up only under its parent's claim, and a claim of the parent
/// fences whatever engine holds one of its unfinished sub-runs (at any depth): an engine that
/// lost a run cannot go on in its sub-runs.
pub async fn sub_runs_fenced_by_their_parent(store: Arc<dyn Store>) {
    let mut parent = run("parent", TimeDelta::minutes(3));
    create(&store, &parent).await;
    let child_of = |p: &RunRecord, step: &str| {
        let mut c = run("child", TimeDelta::minutes(2));
        c.parent_run = Some(p.id.clone());
        c.parent_step = Some(step.into());
        c.parent_attempt = Some(p.attempt);
        c
    };
    // Under the parent's claim: created.
    let mut running = child_of(&parent, "a");
    create(&store, &running).await;
    let mut grandchild = child_of(&running, "deep");
    create(&store, &grandchild).await;
    let mut done = child_of(&parent, "b");
    create(&store, &done).await;
    done.status = RunStatus::Succeeded;
    store.update_run(&done).await.expect("update_run");
    let mut failed = child_of(&parent, "c");
    create(&store, &failed).await;
    failed.status = RunStatus::Failed;
    store.update_run(&failed).await.expect("update_run");
    let mut paused = child_of(&parent, "d");
    create(&store, &paused).await;
    paused.status = RunStatus::Paused;
    store.update_run(&paused).await.expect("update_run");

    // Another engine claims the parent.
    let stale_parent = parent.clone();
    parent.status = RunStatus::Paused;
    store.update_run(&parent).await.expect("update_run");
    let mut taken = parent.clone();
    taken.attempt = 2;
    taken.status = RunStatus::Running;
    assert_eq!(store.claim_run(&taken).await.expect("claim"), Ok(()));

    // The old engine can neither write to the sub-runs it held, nor start or take up one.
    let fenced = |what: &str, e: Result<(), StateError>| {
        assert!(
            matches!(e, Err(StateError::Fenced { .. })),
            "{what}: expected fenced, got {e:?}"
        )
    };
    let s = StepRecord::new(&running.id, "x", None, "h");
    fenced("child step", store.put_step(&running.claim(), &s).await);
    fenced("child heartbeat", store.heartbeat(&running.claim()).await);
    let g = StepRecord::new(&grandchild.id, "x", None, "h");
    fenced(
        "grandchild step",
        store.put_step(&grandchild.claim(), &g).await,
    );
    fenced("paused child", store.update_run(&paused).await);
    let late = child_of(&stale_parent, "e");
    let e = store.create_run(&late, &[]).await;
    match &e {
        Err(StateError::Fenced {
            run_id,
            attempt,
            holder,
        }) => {
            assert_eq!((run_id, *attempt, holder.attempt), (&parent.id, 1, 2))
        }
        other => panic!("a sub-run created under a lost parent claim: {other:?}"),
    }
    assert!(store.get_run(&late.id).await.expect("get").is_none());
    let mut again = store
        .get_run(&paused.id)
        .await
        .expect("get")
        .expect("paused");
    let before = again.attempt;
    again.attempt += 1;
    again.status = RunStatus::Running;
    again.parent_attempt = Some(1);
    fenced(
        "claim under a lost parent",
        store.claim_run(&again).await.map(|_| ()),
    );
    assert_eq!(get(&store, &paused.id).await.attempt, before);

    // Finished sub-runs keep their attempt; unfinished ones moved on; the new holder of the
    // parent takes a sub-run up and writes in it.
    assert_eq!(get(&store, &done.id).await.attempt, 1);
    assert_eq!(get(&store, &failed.id).await.attempt, 1);
    assert_eq!(get(&store, &running.id).await.attempt, 2);
    assert_eq!(get(&store, &grandchild.id).await.attempt, 2);
    again.parent_attempt = Some(2);
    assert_eq!(store.claim_run(&again).await.expect("claim"), Ok(()));
    store
        .put_step(&again.claim(), &StepRecord::new(&again.id, "x", None, "h"))
        .await
        .expect("the new holder writes");
    let fresh = child_of(&taken, "f");
    create(&store, &fresh).await;
    // Without a parent's claim (`cairn resume CHILD`), a sub-run is claimed on its own.
    running.status = RunStatus::Interrupted;
    running.attempt = 2;
    store.update_run(&running).await.expect("update_run");
    let mut alone = running.clone();
    alone.attempt = 3;
    alone.status = RunStatus::Running;
    alone.parent_attempt = None;
    assert_eq!(store.claim_run(&alone).await.expect("claim"), Ok(()));
    // ... and its own claim fences its own sub-runs.
    grandchild.attempt = 2;
    let g = StepRecord::new(&grandchild.id, "y", None, "h");
    fenced(
        "grandchild after its parent's claim",
        store.put_step(&grandchild.claim(), &g).await,
    );
    // A sub-run stored `running` is refused to a claim on its own, but taken up under its
    // parent's current claim (whatever engine ran it is fenced by that claim).
    let mut plain = alone.clone();
    plain.attempt = 4;
    plain.parent_attempt = None;
    assert!(store.claim_run(&plain).await.expect("claim").is_err());
    let mut takeover = plain.clone();
    takeover.parent_attempt = Some(2);
    assert_eq!(store.claim_run(&takeover).await.expect("claim"), Ok(()));
    fenced(
        "the engine it was taken from",
        store.heartbeat(&alone.claim()).await,
    );
}

/// Parents edited into a circle (a store written by hand, or damaged): a claim's walk down
/// the sub-runs ends, fences the others, and never the run it claims.
pub async fn a_circle_of_parents_ends_the_fencing_walk(store: Arc<dyn Store>) {
    let mut a = run("circle", TimeDelta::minutes(2));
    let mut b = run("circle", TimeDelta::minutes(1));
    a.parent_run = Some(b.id.clone());
    b.parent_run = Some(a.id.clone());
    let mut own = run("own-parent", TimeDelta::minutes(1));
    own.parent_run = Some(own.id.clone());
    for r in [&mut a, &mut b, &mut own] {
        create(&store, r).await;
        r.status = RunStatus::Interrupted;
        store.update_run(r).await.expect("update_run");
    }
    for r in [&a, &own] {
        let mut again = r.clone();
        again.attempt = 2;
        again.status = RunStatus::Running;
        let claimed =
            tokio::time::timeout(std::time::Duration::from_secs(10), store.claim_run(&again))
                .await
                .expect("the claim ends");
        assert_eq!(claimed.expect("claim"), Ok(()));
        store
            .heartbeat(&again.claim())
            .await
            .expect("the claim stands: the run did not fence itself");
    }
    assert_eq!(get(&store, &b.id).await.attempt, 2, "b, below a, is fenced");
}

/// Ends attempt 1 of `r` as failed and lets attempt 2 claim the run: `r`'s claim is lost.
async fn lose_to_attempt_2(store: &Arc<dyn Store>, r: &mut RunRecord) {
    r.status = RunStatus::Failed;
    store.update_run(r).await.expect("update_run");
    let mut b = r.clone();
    b.attempt = 2;
    b.status = RunStatus::Running;
    store
        .claim_run(&b)
        .await
        .expect("claim_run")
        .expect("attempt 2");
}

/// A step's end and the next step's start in one transaction: both or neither, fenced.
pub async fn put_steps_together(store: Arc<dyn Store>) {
    let mut r = run("batch", TimeDelta::zero());
    create(&store, &r).await;
    store
        .put_steps(&r.claim(), &[])
        .await
        .expect("nothing to write");
    let mut dump = StepRecord::new(&r.id, "dump", None, "d1");
    dump.status = StepStatus::Running;
    dump.started_at = Some(now());
    store.put_step(&r.claim(), &dump).await.expect("put_step");
    dump.status = StepStatus::Succeeded;
    dump.finished_at = Some(now());
    dump.result = Some(json!({ "exit_code": 0, "stdout": "ok\n" }));
    let mut load = StepRecord::new(&r.id, "load", None, "d2");
    load.status = StepStatus::Running;
    load.started_at = Some(now());
    load.idempotent = false;
    store
        .put_steps(&r.claim(), &[dump.clone(), load.clone()])
        .await
        .expect("put_steps");
    assert_eq!(
        store.steps(&r.id).await.expect("steps"),
        [dump.clone(), load.clone()]
    );

    // Under a lost claim, nothing of the batch is written.
    lose_to_attempt_2(&store, &mut r).await;
    let mut late = load.clone();
    late.status = StepStatus::Succeeded;
    let extra = StepRecord::new(&r.id, "verify", None, "d3");
    match store.put_steps(&r.claim(), &[late, extra]).await {
        Err(StateError::Fenced {
            attempt, holder, ..
        }) => assert_eq!((attempt, holder.attempt), (1, 2)),
        other => panic!("expected a fenced write, got {other:?}"),
    }
    assert_eq!(store.steps(&r.id).await.expect("steps"), [dump, load]);

    let e = store
        .put_steps(
            &no_claim("nope"),
            &[
                StepRecord::new("nope", "x", None, "d"),
                StepRecord::new("nope", "y", None, "d"),
            ],
        )
        .await;
    assert!(matches!(e, Err(StateError::RunNotFound(_))), "{e:?}");
}

/// A batch longer than one statement holds (600 rows), in which one step appears twice, and
/// one item of a `for_each` three times: the last record of each is kept, in the order of its
/// first write; under a lost claim none of the 600 is written.
pub async fn put_steps_long_and_repeated(store: Arc<dyn Store>) {
    let mut r = run("long", TimeDelta::zero());
    create(&store, &r).await;
    let mut batch: Vec<StepRecord> = (0..600)
        .map(|k| {
            let mut s = StepRecord::new(&r.id, format!("s{k}"), None, "d");
            s.status = StepStatus::Succeeded;
            s.result = Some(json!({ "k": k }));
            s
        })
        .collect();
    let mut first = StepRecord::new(&r.id, "s7", None, "d");
    first.status = StepStatus::Running;
    batch.insert(3, first);
    for attempt in 1..=3 {
        let mut item = StepRecord::new(&r.id, "each", Some(2), "d");
        item.attempt = attempt;
        item.status = if attempt == 3 {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        };
        batch.insert(300 + usize::try_from(attempt).expect("small"), item);
    }
    store
        .put_steps(&r.claim(), &batch)
        .await
        .expect("put_steps");
    let stored = store.steps(&r.id).await.expect("steps");
    assert_eq!(stored.len(), 601);
    let ids: Vec<&str> = stored.iter().map(|s| s.step_id.as_str()).collect();
    // s7 was first written fourth (before s3), "each" after s299.
    assert_eq!(&ids[..5], ["s0", "s1", "s2", "s7", "s3"]);
    assert_eq!(ids[300], "each");
    let s7 = stored.iter().find(|s| s.step_id == "s7").expect("s7");
    assert_eq!(
        (s7.status, s7.result.clone()),
        (StepStatus::Succeeded, Some(json!({ "k": 7 })))
    );
    let each = stored.iter().find(|s| s.step_id == "each").expect("each");
    assert_eq!(
        (each.item, each.attempt, each.status),
        (Some(2), 3, StepStatus::Succeeded)
    );

    lose_to_attempt_2(&store, &mut r).await;
    let late: Vec<StepRecord> = (0..600)
        .map(|k| StepRecord::new(&r.id, format!("late{k}"), None, "d"))
        .collect();
    match store.put_steps(&r.claim(), &late).await {
        Err(StateError::Fenced { attempt, .. }) => assert_eq!(attempt, 1),
        other => panic!("expected a fenced write, got {other:?}"),
    }
    assert_eq!(store.steps(&r.id).await.expect("steps"), stored);
}

/// A refused claim writes nothing: the run row, its attempt and its holder stay as they were.
pub async fn refused_claims_change_nothing(store: Arc<dyn Store>) {
    let running = run("busy", TimeDelta::minutes(2));
    create(&store, &running).await;
    let hour = std::time::Duration::from_secs(3600);
    let mine = cairn_state::LockHolder::this_process(&running.id);
    assert_eq!(
        store
            .try_lock("db:prod", &mine, hour)
            .await
            .expect("try_lock"),
        Ok(())
    );
    let lock_before = store.locks().await.expect("locks");
    let mut paused = run("gate", TimeDelta::minutes(1));
    paused.status = RunStatus::Paused;
    paused.attempt = 3;
    create(&store, &paused).await;
    let before = (
        get(&store, &running.id).await,
        get(&store, &paused.id).await,
    );

    // A second resume of the running run: it takes the runbook's lock first, then claims. Both
    // are refused, and the lock still names the process that holds the run.
    let rival_process = cairn_state::LockHolder {
        run_id: running.id.clone(),
        host: current_host(),
        pid: dead_pid(),
    };
    let held = store
        .try_lock("db:prod", &rival_process, hour)
        .await
        .expect("try_lock")
        .expect_err("the run's own lock, held by its running process");
    assert_eq!(held.pid, std::process::id());
    assert_eq!(store.locks().await.expect("locks"), lock_before);
    let mut rival = running.clone();
    rival.attempt = 2;
    rival.pid = 999;
    rival.host = "rival".into();
    rival.inputs = json!({ "rival": true });
    rival.claimed_at = now();
    let holder = store
        .claim_run(&rival)
        .await
        .expect("claim_run")
        .expect_err("a running run is refused");
    assert_eq!((holder.attempt, holder.pid), (1, running.pid));

    // A claim from a stale read (attempt 1 -> 2 while the run is at attempt 3).
    let mut stale = paused.clone();
    stale.attempt = 2;
    stale.status = RunStatus::Running;
    stale.pid = 999;
    let holder = store
        .claim_run(&stale)
        .await
        .expect("claim_run")
        .expect_err("attempt 2 is long gone");
    assert_eq!(holder.attempt, 3);

    let after = (
        get(&store, &running.id).await,
        get(&store, &paused.id).await,
    );
    assert_eq!(after, before);
}

/// A process that lost the run cannot release the locks its new attempt holds.
pub async fn lock_release_is_fenced(store: Arc<dyn Store>) {
    let mut r = run("locked", TimeDelta::zero());
    create(&store, &r).await;
    let holder = cairn_state::LockHolder::this_process(&r.id);
    let hour = std::time::Duration::from_secs(3600);
    for name in ["db:prod", "step"] {
        assert_eq!(
            store.try_lock(name, &holder, hour).await.expect("try_lock"),
            Ok(())
        );
    }
    // The run is taken over: marked interrupted, then claimed by another process, which takes
    // its locks back.
    r.status = RunStatus::Interrupted;
    store.update_run(&r).await.expect("update_run");
    let mut b = r.clone();
    b.attempt = 2;
    b.status = RunStatus::Running;
    b.claimed_at = now();
    store
        .claim_run(&b)
        .await
        .expect("claim_run")
        .expect("attempt 2");
    for name in ["db:prod", "step"] {
        assert_eq!(
            store.try_lock(name, &holder, hour).await.expect("try_lock"),
            Ok(())
        );
    }

    let fenced = |e: Result<(), StateError>| match e {
        Err(StateError::Fenced {
            attempt, holder, ..
        }) => assert_eq!((attempt, holder.attempt), (1, 2)),
        other => panic!("expected a fenced release, got {other:?}"),
    };
    fenced(store.release_lock("step", &r.claim()).await);
    fenced(store.release_locks(&r.claim()).await);
    let names = |locks: Vec<cairn_state::LockInfo>| -> Vec<String> {
        locks.into_iter().map(|l| l.name).collect()
    };
    assert_eq!(
        names(store.locks().await.expect("locks")),
        ["db:prod", "step"]
    );

    // The holder releases them.
    store
        .release_lock("step", &b.claim())
        .await
        .expect("release_lock");
    assert_eq!(names(store.locks().await.expect("locks")), ["db:prod"]);
    store
        .release_locks(&b.claim())
        .await
        .expect("release_locks");
    assert!(store.locks().await.expect("locks").is_empty());
    // Releasing what is not held is not an error.
    store
        .release_lock("step", &b.claim())
        .await
        .expect("release_lock");
}

/// The runs of `v1/rows.sql`, read from a store migrated from schema version 1, and resumed.
#[allow(dead_code)] // not for the memory store, which has no schema
pub async fn v1_runs_after_migration(store: Arc<dyn Store>) {
    use chrono::{DateTime, Utc};
    let t = |s: &str| -> DateTime<Utc> { s.parse().expect("time") };
    let paused_id = "01JV1PAUSED0000000000000000";
    let paused = get(&store, paused_id).await;
    let want = RunRecord {
        id: paused_id.into(),
        runbook: "restore".into(),
        path: "/srv/runbooks/restore.yaml".into(),
        content_hash: "sha256:aa".into(),
        inputs: json!({ "env": "prod", "dirs": ["/a", "/b"] }),
        // A run recorded before version 9 has no labels.
        labels: Default::default(),
        status: RunStatus::Paused,
        started_at: t("2026-01-02T03:04:05.000006Z"),
        finished_at: None,
        heartbeat_at: t("2026-01-02T03:05:00.25Z"),
        host: "old-host".into(),
        pid: 4242,
        user: "sre".into(),
        parent_run: None,
        outputs: None,
        error: None,
        attempt: 1,
        // Version 2 dates the claim of a version-1 run at its last heartbeat.
        claimed_at: t("2026-01-02T03:05:00.25Z"),
        parent_step: None,
        // Not known for a record written before version 4.
        pid_start: None,
        heartbeat_seq: 0,
        unconfirmed: None,
        parent_attempt: None,
    };
    assert_eq!(paused, want);
    let failed = get(&store, "01jv1failed").await;
    assert_eq!(
        (
            failed.status,
            failed.attempt,
            failed.outputs.clone(),
            failed.error.as_deref()
        ),
        (
            RunStatus::Failed,
            2,
            Some(json!({ "size": 42 })),
            Some("step `dump`: exit status 1")
        )
    );
    assert_eq!(
        ids(&store, RunFilter::default()).await,
        [paused_id.to_string(), failed.id.clone()]
    );
    assert!(failed.labels.is_empty());
    assert!(
        ids(
            &store,
            RunFilter {
                labels: vec![("team".into(), "memory".into())],
                ..RunFilter::default()
            }
        )
        .await
        .is_empty(),
        "no run of before version 9 matches a label"
    );
    let steps = store.steps(paused_id).await.expect("steps");
    let summary: Vec<_> = steps
        .iter()
        .map(|s| (s.step_id.as_str(), s.status, s.idempotent, s.result.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "dump",
                StepStatus::Succeeded,
                true,
                Some(json!({ "exit_code": 0 }))
            ),
            ("gate", StepStatus::Waiting, false, None),
        ]
    );
    assert_eq!(steps[0].log_path.as_deref(), Some("/logs/dump.log"));
    assert_eq!(
        store.step_defs(paused_id).await.expect("step_defs"),
        [
            def("dump", &[]),
            def("gate", &["dump"]),
            def("load", &["gate"])
        ]
        .map(|mut d| {
            d.def_hash = format!("h-{}", d.step_id);
            d
        })
    );
    let approvals = store.approvals(paused_id).await.expect("approvals");
    assert_eq!(
        (
            approvals.len(),
            approvals[0].decision,
            approvals[0].by.as_str()
        ),
        (1, Decision::Approved, "alice")
    );

    // Resumed as any run: claimed for attempt 2, the gate's answer and the next step's start
    // written together, finished; the version-1 attempt is fenced out.
    let mut resumed = RunRecord {
        attempt: 2,
        status: RunStatus::Running,
        host: current_host(),
        pid: std::process::id(),
        claimed_at: now(),
        heartbeat_at: now(),
        ..paused.clone()
    };
    store
        .claim_run(&resumed)
        .await
        .expect("claim_run")
        .expect("attempt 2");
    let mut gate = steps[1].clone();
    gate.status = StepStatus::Succeeded;
    gate.finished_at = Some(now());
    let mut load = StepRecord::new(paused_id, "load", None, "h-load");
    load.status = StepStatus::Running;
    load.attempt = 1;
    store
        .put_steps(&resumed.claim(), &[gate, load])
        .await
        .expect("put_steps");
    let e = store.put_step(&paused.claim(), &steps[0]).await;
    assert!(matches!(e, Err(StateError::Fenced { .. })), "{e:?}");
    resumed.status = RunStatus::Succeeded;
    resumed.finished_at = Some(now());
    store.update_run(&resumed).await.expect("update_run");
    let done = get(&store, paused_id).await;
    assert_eq!((done.status, done.attempt), (RunStatus::Succeeded, 2));
    let statuses: Vec<_> = store
        .steps(paused_id)
        .await
        .expect("steps")
        .into_iter()
        .map(|s| (s.step_id, s.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("dump".to_string(), StepStatus::Succeeded),
            ("gate".to_string(), StepStatus::Succeeded),
            ("load".to_string(), StepStatus::Running),
        ]
    );
}

/// Pages of the history follow one another without a gap or a repeat, newest first, with the
/// filters applied; runs started at the same instant are ordered by id.
pub async fn runs_paged_by_cursor(store: Arc<dyn Store>) {
    let mut made = Vec::new();
    for i in 0..7u32 {
        let mut r = run(
            if i % 2 == 0 { "even" } else { "odd" },
            TimeDelta::minutes(10),
        );
        // Three runs share one instant: the id breaks the tie.
        if i >= 4 {
            r.started_at = made
                .iter()
                .map(|m: &RunRecord| m.started_at)
                .next()
                .unwrap_or(r.started_at);
        } else {
            r.started_at -= TimeDelta::seconds(i64::from(i));
        }
        create(&store, &r).await;
        let mut done = r.clone();
        done.status = if i == 3 {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        done.finished_at = Some(now());
        store.update_run(&done).await.expect("update_run");
        made.push(done);
    }
    let ids = |rows: &[ListedRun]| -> Vec<String> {
        rows.iter()
            .map(|r| match r {
                ListedRun::Run(r) => r.id.clone(),
                ListedRun::Unreadable { id, .. } => id.clone(),
            })
            .collect()
    };
    let whole = ids(&store
        .list_run_rows(&RunFilter::default())
        .await
        .expect("list"));
    assert_eq!(whole.len(), 7);
    let mut paged = Vec::new();
    let mut after: Option<RunCursor> = None;
    loop {
        let page = store
            .list_runs_page(
                &RunFilter {
                    limit: Some(3),
                    ..RunFilter::default()
                },
                after.as_ref(),
            )
            .await
            .expect("page");
        assert!(page.len() <= 3);
        let Some(ListedRun::Run(last)) = page.last() else {
            break;
        };
        after = Some(RunCursor::after(last));
        paged.extend(ids(&page));
    }
    assert_eq!(
        paged, whole,
        "the pages, one after the other, are the whole history"
    );
    let even = store
        .list_runs_page(
            &RunFilter {
                runbook: Some("even".into()),
                limit: Some(100),
                ..RunFilter::default()
            },
            None,
        )
        .await
        .expect("page");
    assert_eq!(even.len(), 4);
    let failed = store
        .list_runs_page(
            &RunFilter {
                status: Some(RunStatus::Failed),
                limit: Some(100),
                ..RunFilter::default()
            },
            None,
        )
        .await
        .expect("page");
    assert_eq!(ids(&failed), [made[3].id.clone()]);
}

/// Actions are kept per run in the order recorded, with who, where from and when; an action
/// on an unknown run is refused.
pub async fn actions_audit_trail(store: Arc<dyn Store>) {
    let r = run("gate", TimeDelta::zero());
    create(&store, &r).await;
    assert!(store.actions(&r.id).await.expect("actions").is_empty());
    let approve = Action {
        run_id: r.id.clone(),
        at: now(),
        by: "alice".into(),
        source: "192.0.2.7".into(),
        action: "approve".into(),
        step_id: Some("confirm".into()),
        detail: Some("<script>alert(1)</script> recorded".into()),
    };
    let resume = Action {
        action: "resume".into(),
        step_id: None,
        detail: None,
        ..approve.clone()
    };
    store.record_action(&approve).await.expect("record");
    store.record_action(&resume).await.expect("record");
    assert_eq!(
        store.actions(&r.id).await.expect("actions"),
        [approve.clone(), resume]
    );
    let e = store
        .record_action(&Action {
            run_id: "nope".into(),
            ..approve
        })
        .await;
    assert!(matches!(e, Err(StateError::RunNotFound(_))), "{e:?}");
}

/// The gates waiting in paused runs, in one read: a paused run's own waiting steps (not its
/// items', not its finished ones), none of a running or failed run, oldest wait first, at most
/// the limit.
pub async fn waiting_gates_of_paused_runs(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for (i, status) in [
        RunStatus::Paused,
        RunStatus::Paused,
        RunStatus::Failed,
        RunStatus::Running,
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = run(&format!("gated-{i}"), TimeDelta::minutes(10));
        r.user = format!("starter-{i}");
        create(&store, &r).await;
        let claim = r.claim();
        let waiting_since = now() - TimeDelta::minutes(i64::try_from(5 - i).unwrap_or(0));
        let mut recs = Vec::new();
        for (step, item, st) in [
            ("gate", None, StepStatus::Waiting),
            ("items", Some(0), StepStatus::Waiting),
            ("done", None, StepStatus::Succeeded),
        ] {
            let mut s = StepRecord::new(&r.id, step, item, "h");
            s.status = st;
            s.started_at = Some(waiting_since);
            s.result = Some(json!({ "message": format!("gate of run {i}") }));
            recs.push(s);
        }
        store.put_steps(&claim, &recs).await.expect("put_steps");
        let mut done = r.clone();
        done.status = status;
        store.update_run(&done).await.expect("update_run");
        ids.push(r.id.clone());
    }
    let gates = store.waiting_gates(100).await.expect("waiting_gates");
    let seen: Vec<(&str, &str, &str, &str)> = gates
        .iter()
        .map(|g| {
            (
                g.step.run_id.as_str(),
                g.step.step_id.as_str(),
                g.runbook.as_str(),
                g.starter.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (ids[0].as_str(), "gate", "gated-0", "starter-0"),
            (ids[1].as_str(), "gate", "gated-1", "starter-1"),
        ]
    );
    assert_eq!(gates[0].step.status, StepStatus::Waiting);
    assert_eq!(gates[0].step.item, None);
    assert_eq!(
        gates[0].step.result,
        Some(json!({ "message": "gate of run 0" }))
    );
    let one = store.waiting_gates(1).await.expect("waiting_gates");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].step.run_id, ids[0]);
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn want(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A run keeps the labels it was created with (later writes of the run do not change them),
/// and the history is filtered by them: every label asked must match, with the other filters,
/// page by page.
pub async fn runs_filtered_by_label(store: Arc<dyn Store>) {
    let hostile = "<b>\"it's\"</b> ; DROP TABLE x; --";
    let specs: [&[(&str, &str)]; 5] = [
        &[("team", "memory"), ("kind", "backup")],
        &[("team", "memory"), ("kind", "restore")],
        &[("team", "storage")],
        &[],
        &[("team", "memory"), ("note", hostile)],
    ];
    let mut made: Vec<RunRecord> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut r = run(
            if i == 1 { "restore" } else { "backup" },
            TimeDelta::minutes(10),
        );
        r.started_at -= TimeDelta::seconds(10 - i64::try_from(i).expect("small"));
        // The last shares the second's instant: the id breaks the tie.
        if i == 4 {
            r.started_at = made[1].started_at;
        }
        r.labels = labels(spec);
        create(&store, &r).await;
        made.push(r);
    }
    // Written again without its labels (as a resume's record may be): they stay.
    let mut done = made[0].clone();
    done.labels.clear();
    done.status = RunStatus::Succeeded;
    done.finished_at = Some(now());
    store.update_run(&done).await.expect("update_run");
    let mut again = made[1].clone();
    again.labels.clear();
    again.status = RunStatus::Failed;
    store.update_run(&again).await.expect("update_run");
    again.attempt = 2;
    again.status = RunStatus::Running;
    store
        .claim_run(&again)
        .await
        .expect("claim_run")
        .expect("claimed");
    assert_eq!(get(&store, &made[0].id).await.labels, made[0].labels);
    assert_eq!(get(&store, &made[1].id).await.labels, made[1].labels);
    assert_eq!(get(&store, &made[4].id).await.labels["note"], hostile);

    let by = |pairs: &[(&str, &str)]| RunFilter {
        labels: want(pairs),
        ..RunFilter::default()
    };
    let id = |i: usize| made[i].id.clone();
    // 4 and 1 started at the same instant: the greater id first.
    let memory_newest_first = if made[4].id > made[1].id {
        vec![id(4), id(1), id(0)]
    } else {
        vec![id(1), id(4), id(0)]
    };
    assert_eq!(
        ids(&store, by(&[("team", "memory")])).await,
        memory_newest_first
    );
    assert_eq!(
        ids(&store, by(&[("team", "memory"), ("kind", "backup")])).await,
        [id(0)]
    );
    assert_eq!(
        ids(&store, by(&[("kind", "backup"), ("team", "memory")])).await,
        [id(0)],
        "the order of the labels asked does not matter"
    );
    assert!(
        ids(&store, by(&[("team", "memory"), ("kind", "none")]))
            .await
            .is_empty()
    );
    assert!(
        ids(&store, by(&[("team", "Memory")])).await.is_empty(),
        "values are exact"
    );
    assert!(
        ids(&store, by(&[("owner", "memory")])).await.is_empty(),
        "keys are exact"
    );
    assert_eq!(ids(&store, by(&[("note", hostile)])).await, [id(4)]);
    assert_eq!(
        ids(
            &store,
            RunFilter {
                runbook: Some("restore".into()),
                ..by(&[("team", "memory")])
            }
        )
        .await,
        [id(1)]
    );
    assert_eq!(
        ids(
            &store,
            RunFilter {
                status: Some(RunStatus::Succeeded),
                ..by(&[("team", "memory")])
            }
        )
        .await,
        [id(0)]
    );
    let listed = store
        .list_runs(&by(&[("team", "storage")]))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].labels, labels(&[("team", "storage")]));

    // Page by page, one run a page: the same runs as the whole list.
    let mut paged = Vec::new();
    let mut after: Option<RunCursor> = None;
    loop {
        let page = store
            .list_runs_page(
                &RunFilter {
                    limit: Some(1),
                    ..by(&[("team", "memory")])
                },
                after.as_ref(),
            )
            .await
            .expect("page");
        let Some(ListedRun::Run(last)) = page.last() else {
            break;
        };
        assert_eq!(page.len(), 1);
        after = Some(RunCursor::after(last));
        paged.push(last.id.clone());
    }
    assert_eq!(paged, memory_newest_first);
}
