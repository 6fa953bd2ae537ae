//! An engine whose run is claimed by another process (a takeover after a stall) stops at its
//! next write and says why: the step in flight is not recorded as done by it, nothing after it
//! starts, and the run's end is not written over the new holder's attempt.

use cairn_engine::events::RunOutcome;
use cairn_engine::events::{Event, Sink};
use cairn_engine::plan::Invocation;
use cairn_engine::resume::{ResumeError, ResumeOptions, Resumed, resume};
use cairn_engine::run::{RunError, RunOptions, execute};
use cairn_state::{
    Approval, Claim, LockHolder, LockInfo, RunFilter, RunHolder, RunRecord, RunStatus, StateError,
    StepDef, StepRecord, StepStatus, Store,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Started(Mutex<Vec<String>>);

impl Sink for Started {
    fn emit(&self, event: &Event) {
        if let Event::StepStarted { step, .. } = event
            && let Ok(mut seen) = self.0.lock()
        {
            seen.push(step.clone());
        }
    }
}

async fn lost_claim_stops_the_engine(store: Arc<dyn Store>, dir: &std::path::Path) {
    let after = dir.join("after.txt");
    let path = dir.join("rb.yaml");
    std::fs::write(
        &path,
        format!(
            "cairn: 1\nname: taken-over\nsteps:\n  - id: slow\n    shell: sleep 1\n  - id: after\n    shell: touch {}\n",
            after.display()
        ),
    )
    .expect("write runbook");
    let templates = Arc::new(cairn_template::Templates::new());
    let (checked, _) = cairn_model::load(&path, &templates).expect("valid runbook");
    let sink = Arc::new(Started::default());
    let opts = RunOptions {
        logs: dir.join("logs"),
        ..RunOptions::default()
    };
    let inv = Invocation {
        sets: Vec::new(),
        inputs_file: None,
    };
    let engine = {
        let (store, sink) = (store.clone(), sink.clone());
        tokio::spawn(
            async move { execute(Arc::new(checked), templates, &inv, store, sink, opts).await },
        )
    };
    // Once `slow` runs, another host takes the run over, as after a stall: a reader marks it
    // interrupted, then a resume claims attempt 2.
    let run = loop {
        let started = sink.0.lock().map(|s| s.contains(&"slow".to_string()));
        if started.unwrap_or(false) {
            let runs = store.list_runs(&Default::default()).await.expect("list");
            break runs.into_iter().next().expect("the run");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut seen = run.clone();
    seen.status = RunStatus::Interrupted;
    store.update_run(&seen).await.expect("mark interrupted");
    let mut other = seen.clone();
    other.attempt = 2;
    other.status = RunStatus::Running;
    other.host = "other-host".into();
    other.pid = 4242;
    other.claimed_at = cairn_state::now();
    store
        .claim_run(&other)
        .await
        .expect("claim_run")
        .expect("the takeover wins");

    let ended = tokio::time::timeout(Duration::from_secs(60), engine)
        .await
        .expect("the engine stops")
        .expect("engine task");
    match ended {
        Err(RunError::State(StateError::Fenced {
            attempt, holder, ..
        })) => {
            assert_eq!((attempt, holder.attempt, holder.pid), (1, 2, 4242));
            assert_eq!(holder.host, "other-host");
        }
        Err(e) => panic!("expected a lost claim, got {e}"),
        Ok(r) => panic!("expected a lost claim, the run ended {:?}", r.outcome),
    }
    assert_eq!(
        *sink.0.lock().expect("events"),
        ["slow"],
        "nothing started after the claim was lost"
    );
    assert!(!after.exists(), "`after` did not run");
    let steps = store.steps(&run.id).await.expect("steps");
    let slow = steps.iter().find(|s| s.step_id == "slow").expect("slow");
    assert_eq!(
        slow.status,
        StepStatus::Running,
        "the fenced engine did not record `slow` as done"
    );
    assert!(steps.iter().all(|s| s.step_id != "after"), "{steps:?}");
    let now = store.get_run(&run.id).await.expect("get").expect("run");
    assert_eq!(
        (now.attempt, now.pid, now.status),
        (2, 4242, RunStatus::Running)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_claim_stops_the_engine_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = cairn_state::open(&dir.path().join("state.db").display().to_string())
        .await
        .expect("open sqlite");
    lost_claim_stops_the_engine(store, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_claim_stops_the_engine_in_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = cairn_state::open("memory:").await.expect("open memory");
    lost_claim_stops_the_engine(store, dir.path()).await;
}

/// A store that lets a process which had lost the run write one step record late: between a
/// resume's read of the records and its claim (a stalled engine's write landing then).
struct LateWrite {
    inner: Arc<dyn Store>,
    late: Mutex<Option<(Claim, StepRecord)>>,
}

#[async_trait::async_trait]
impl Store for LateWrite {
    async fn create_run(&self, run: &RunRecord, defs: &[StepDef]) -> Result<(), StateError> {
        self.inner.create_run(run, defs).await
    }
    async fn claim_run(&self, run: &RunRecord) -> Result<Result<(), RunHolder>, StateError> {
        let late = self.late.lock().expect("late").take();
        if let Some((claim, rec)) = late {
            self.inner
                .put_step(&claim, &rec)
                .await
                .expect("the late write lands before the claim");
        }
        self.inner.claim_run(run).await
    }
    async fn update_run(&self, run: &RunRecord) -> Result<(), StateError> {
        self.inner.update_run(run).await
    }
    async fn set_step_defs(&self, claim: &Claim, defs: &[StepDef]) -> Result<(), StateError> {
        self.inner.set_step_defs(claim, defs).await
    }
    async fn step_defs(&self, run_id: &str) -> Result<Vec<StepDef>, StateError> {
        self.inner.step_defs(run_id).await
    }
    async fn heartbeat(&self, claim: &Claim) -> Result<(), StateError> {
        self.inner.heartbeat(claim).await
    }
    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        self.inner.get_run(id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StateError> {
        self.inner.list_runs(filter).await
    }
    async fn put_step(&self, claim: &Claim, rec: &StepRecord) -> Result<(), StateError> {
        self.inner.put_step(claim, rec).await
    }
    async fn put_steps(&self, claim: &Claim, recs: &[StepRecord]) -> Result<(), StateError> {
        self.inner.put_steps(claim, recs).await
    }
    async fn sub_runs(&self, parent_run: &str) -> Result<Vec<RunRecord>, StateError> {
        self.inner.sub_runs(parent_run).await
    }
    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StateError> {
        self.inner.steps(run_id).await
    }
    async fn try_lock(
        &self,
        name: &str,
        holder: &LockHolder,
        lease: Duration,
    ) -> Result<Result<(), LockInfo>, StateError> {
        self.inner.try_lock(name, holder, lease).await
    }
    async fn release_lock(&self, name: &str, claim: &Claim) -> Result<(), StateError> {
        self.inner.release_lock(name, claim).await
    }
    async fn release_locks(&self, claim: &Claim) -> Result<(), StateError> {
        self.inner.release_locks(claim).await
    }
    async fn locks(&self) -> Result<Vec<LockInfo>, StateError> {
        self.inner.locks().await
    }
    async fn record_approval(&self, a: &Approval) -> Result<(), StateError> {
        self.inner.record_approval(a).await
    }
    async fn approvals(&self, run_id: &str) -> Result<Vec<Approval>, StateError> {
        self.inner.approvals(run_id).await
    }
}

/// A resume decides on the records it read, then claims the run. A process that had lost the
/// run (stalled past its heartbeat) may write a record in between; then the resume gives the
/// run back as it was and runs nothing, rather than act on a stale picture. (A mutant that
/// skipped this check survived the simulation, whose stale engines wake after the claim.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_whose_records_changed_before_its_claim_runs_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (runs, ok) = (dir.path().join("runs.txt"), dir.path().join("ok"));
    let path = dir.path().join("rb.yaml");
    std::fs::write(
        &path,
        format!(
            "cairn: 1\nname: raced\nsteps:\n  - id: a\n    shell: echo ran >> {} && test -e {}\n",
            runs.display(),
            ok.display()
        ),
    )
    .expect("write runbook");
    let store = cairn_state::open("memory:").await.expect("open memory");
    let templates = Arc::new(cairn_template::Templates::new());
    let (checked, _) = cairn_model::load(&path, &templates).expect("valid runbook");
    let opts = RunOptions {
        logs: dir.path().join("logs"),
        ..RunOptions::default()
    };
    let inv = Invocation {
        sets: Vec::new(),
        inputs_file: None,
    };
    let sink = Arc::new(Started::default());
    let first = execute(
        Arc::new(checked),
        templates.clone(),
        &inv,
        store.clone(),
        sink.clone(),
        opts.clone(),
    )
    .await
    .expect("the run ends");
    assert_eq!(first.outcome, RunOutcome::Failed);
    std::fs::write(&ok, "").expect("fix");
    let run = store
        .get_run(&first.run_id)
        .await
        .expect("get")
        .expect("run");
    let mut late = store
        .steps(&run.id)
        .await
        .expect("steps")
        .into_iter()
        .find(|s| s.step_id == "a")
        .expect("a's record");
    late.error = Some("written late by the process that had lost the run".into());
    let racing: Arc<dyn Store> = Arc::new(LateWrite {
        inner: store.clone(),
        late: Mutex::new(Some((run.claim(), late.clone()))),
    });
    let got = resume(
        &run.id,
        templates.clone(),
        racing,
        sink.clone(),
        opts.clone(),
        &ResumeOptions::default(),
    )
    .await;
    assert!(
        matches!(&got, Err(ResumeError::Raced(id)) if *id == run.id),
        "expected the resume to give the run back, got {:?}",
        got.as_ref()
            .map(|_| "a resumed run")
            .map_err(|e| e.to_string())
    );
    assert_eq!(
        std::fs::read_to_string(&runs).expect("runs"),
        "ran\n",
        "the raced resume ran nothing"
    );
    let back = store.get_run(&run.id).await.expect("get").expect("run");
    assert_eq!(
        (back.status, back.attempt, back.error.clone()),
        (RunStatus::Failed, 2, run.error.clone()),
        "the run is given back as it was, its attempt counted"
    );
    // A resume that reads the records as they are now goes on.
    let again = resume(
        &run.id,
        templates,
        store.clone(),
        sink,
        opts,
        &ResumeOptions::default(),
    )
    .await
    .expect("resume");
    assert!(matches!(again, Resumed::Ran(ref r) if r.outcome == RunOutcome::Succeeded));
    assert_eq!(std::fs::read_to_string(&runs).expect("runs"), "ran\nran\n");
}
