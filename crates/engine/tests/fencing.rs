//! An engine whose run is claimed by another process (a takeover after a stall) stops at its
//! next write and says why: the step in flight is not recorded as done by it, nothing after it
//! starts, and the run's end is not written over the new holder's attempt.

use cairn_engine::events::{Event, Sink};
use cairn_engine::plan::Invocation;
use cairn_engine::run::{RunError, RunOptions, execute};
use cairn_state::{RunStatus, StateError, StepStatus, Store};
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
