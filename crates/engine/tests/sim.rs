//! The simulation test of durable execution. A seeded generator makes random runbooks (needs,
//! parallel branches, `for_each`, approvals, retries, `on_failure: continue`, `finally`); the
//! real scheduler, checkpoints and resume run them with scripted actions (through the engine's
//! `Actions` port) on a store that injects a crash before every checkpoint write in turn: the
//! engine is stopped there (its store refuses everything from that write on, as a dead
//! process writes nothing), the run is marked interrupted, and it is resumed to its end, at
//! times by two resumes racing. Each crash case is checked against a crash-free run of the
//! same runbook and against the rules of docs/state.md:
//!
//! - every step ends as in the crash-free run, and so does the run;
//! - no step that had succeeded when the crash came runs again, unless a step it needs had
//!   not succeeded (it then runs again by the resume rules), or it is a `finally` step;
//! - no step starts before every step it needs that runs in the same attempt has finished;
//! - a step reads the outputs of the latest successful execution of the step it reads;
//! - of two resumes started together, exactly one runs the run and the other is refused;
//! - within one attempt a step (or item) runs at most its `retry.attempts` times.
//!
//! `SIM_CASES` (default 80 runbooks) and `SIM_SEED` choose the runbooks; the number of crash
//! points exercised is printed. `scripts/sim.sh` runs many more.

use async_trait::async_trait;
use cairn_engine::events::NoSink;
use cairn_engine::exec::{ActionPort, Actions, Attempt, Call};
use cairn_engine::plan::Invocation;
use cairn_engine::prepare::Prepared;
use cairn_engine::resume::{ResumeError, ResumeOptions, Resumed, resume};
use cairn_engine::run::{RunOptions, execute};
use cairn_state::{
    Approval, Claim, Decision, LockHolder, LockInfo, MemoryStore, RunFilter, RunHolder, RunRecord,
    RunStatus, StateError, StepDef, StepRecord, StepStatus, Store,
};
use cairn_steps::StepError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------- the generated runbook

#[derive(Debug, Clone)]
struct SimStep {
    id: String,
    approval: bool,
    /// `None`: no `needs` key (waits for the step written before); `Some(list)`: explicit.
    needs: Option<Vec<usize>>,
    items: Option<usize>,
    attempts: u32,
    /// Attempts (of one item) that fail before one succeeds; `u32::MAX`: always fails.
    fails: u32,
    cont: bool,
    /// Steps whose `outputs.v` this one reads (argv steps that never fail, no `for_each`).
    reads: Vec<usize>,
    finally: bool,
}

impl SimStep {
    /// What the DAG makes it wait for (main steps only).
    fn parents(&self, i: usize) -> Vec<usize> {
        match &self.needs {
            Some(list) => list.clone(),
            None if i > 0 => vec![i - 1],
            None => vec![],
        }
    }
}

fn generate(rng: &mut StdRng) -> Vec<SimStep> {
    let n = rng.gen_range(2..=7);
    let mut steps: Vec<SimStep> = Vec::new();
    for i in 0..n {
        let approval = i > 0 && rng.gen_bool(0.12);
        let needs = if i == 0 || rng.gen_bool(0.4) {
            None
        } else if rng.gen_bool(0.25) {
            Some(vec![])
        } else {
            let mut list: Vec<usize> = (0..i).filter(|_| rng.gen_bool(0.4)).collect();
            if list.is_empty() {
                list.push(rng.gen_range(0..i));
            }
            Some(list)
        };
        let items = (!approval && rng.gen_bool(0.25)).then(|| rng.gen_range(1..=3));
        let attempts = if rng.gen_bool(0.3) {
            rng.gen_range(2..=3)
        } else {
            1
        };
        let fails = match rng.gen_range(0..10) {
            0..=5 => 0,
            6 | 7 => 1,
            _ => u32::MAX,
        };
        let mut s = SimStep {
            id: format!("s{i}"),
            approval,
            needs,
            items,
            attempts,
            fails: if approval { 0 } else { fails },
            cont: rng.gen_bool(0.3),
            reads: vec![],
            finally: false,
        };
        let parents = s.parents(i);
        s.reads = parents
            .into_iter()
            .filter(|&p| {
                let p = &steps[p];
                !p.approval && p.items.is_none() && p.fails == 0
            })
            .collect();
        steps.push(s);
    }
    if rng.gen_bool(0.3) {
        steps.push(SimStep {
            id: "fin".into(),
            approval: false,
            needs: None,
            items: None,
            attempts: 1,
            fails: if rng.gen_bool(0.3) { 1 } else { 0 },
            cont: false,
            reads: vec![],
            finally: true,
        });
    }
    steps
}

fn yaml(steps: &[SimStep]) -> String {
    let mut out = String::from("cairn: 1\nname: sim\nsteps:\n");
    let mut fin = String::new();
    for s in steps {
        let mut y = format!("  - id: {}\n", s.id);
        if s.approval {
            y.push_str("    approval: go on?\n");
        } else {
            let mut argv = vec![format!("\"{}\"", s.id)];
            for &p in &s.reads {
                argv.push(format!("\"{{{{ steps.{}.outputs.v }}}}\"", steps[p].id));
            }
            y.push_str(&format!("    argv: [{}]\n", argv.join(", ")));
            y.push_str("    outputs: { v: \"{{ result.stdout }}\" }\n");
        }
        if let Some(needs) = &s.needs {
            let names: Vec<&str> = needs.iter().map(|&p| steps[p].id.as_str()).collect();
            y.push_str(&format!("    needs: [{}]\n", names.join(", ")));
        }
        if let Some(k) = s.items {
            let list: Vec<String> = (0..k).map(|x| x.to_string()).collect();
            y.push_str(&format!("    for_each: [{}]\n", list.join(", ")));
        }
        if s.attempts > 1 {
            y.push_str(&format!(
                "    retry: {{ attempts: {}, delay: 1ms }}\n",
                s.attempts
            ));
        }
        if s.cont {
            y.push_str("    on_failure: continue\n");
        }
        if s.finally {
            fin.push_str(&y);
        } else {
            out.push_str(&y);
        }
    }
    if !fin.is_empty() {
        out.push_str("finally:\n");
        out.push_str(&fin);
    }
    out
}

// ---------------------------------------------------------------- scripted actions

#[derive(Debug, Clone)]
struct Exec {
    seg: usize,
    step: String,
    item: Option<usize>,
    attempt: u32,
    start: u64,
    end: u64,
    ok: bool,
    token: String,
    args: Vec<String>,
}

#[derive(Default)]
struct World {
    clock: AtomicU64,
    log: Mutex<Vec<Exec>>,
}

struct Script {
    world: Arc<World>,
    seg: usize,
    fails: HashMap<String, u32>,
}

#[async_trait]
impl Actions for Script {
    async fn perform(
        &self,
        call: &Call<'_>,
        action: &Prepared,
        _a: &Attempt<'_>,
    ) -> Result<Json, StepError> {
        let start = self.world.clock.fetch_add(1, Ordering::SeqCst);
        // Let other branches interleave, as real steps do.
        for _ in 0..(start % 3) {
            tokio::task::yield_now().await;
        }
        let args = match action {
            Prepared::Argv { argv, env, .. } => argv.iter().chain(env.values()).cloned().collect(),
            Prepared::Shell { command, env, .. } => std::iter::once(command.clone())
                .chain(env.values().cloned())
                .collect(),
            _ => vec![],
        };
        let fails = self.fails.get(call.step).copied().unwrap_or(0);
        let ok = call.attempt > fails;
        let token = format!("{}@{start}", call.step);
        let end = self.world.clock.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut log) = self.world.log.lock() {
            log.push(Exec {
                seg: self.seg,
                step: call.step.to_string(),
                item: call.item,
                attempt: call.attempt,
                start,
                end,
                ok,
                token: token.clone(),
                args,
            });
        }
        let result = json!({ "exit_code": if ok { 0 } else { 1 }, "stdout": token, "stderr": "" });
        if ok {
            Ok(result)
        } else {
            Err(StepError::failed("scripted failure", Some(result)))
        }
    }
}

// ---------------------------------------------------------------- the fault-injecting store

/// Counts checkpoint writes; from write number `crash_at` on, every write fails and nothing
/// is kept, as for a process that died just before it.
struct Faulty {
    inner: Arc<MemoryStore>,
    writes: AtomicUsize,
    crash_at: usize,
    dead: AtomicBool,
    /// Two resumes meet here before claiming, so that they really race.
    race: Option<Arc<tokio::sync::Barrier>>,
}

impl Faulty {
    fn new(inner: Arc<MemoryStore>, crash_at: usize) -> Faulty {
        Faulty {
            inner,
            writes: AtomicUsize::new(0),
            crash_at,
            dead: AtomicBool::new(false),
            race: None,
        }
    }

    fn write(&self) -> Result<(), StateError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.crash_at {
            self.dead.store(true, Ordering::SeqCst);
        }
        if self.dead.load(Ordering::SeqCst) {
            return Err(StateError::Corrupt("simulated crash".into()));
        }
        Ok(())
    }

    fn alive(&self) -> Result<(), StateError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(StateError::Corrupt("simulated crash".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for Faulty {
    async fn create_run(&self, run: &RunRecord, defs: &[StepDef]) -> Result<(), StateError> {
        self.write()?;
        self.inner.create_run(run, defs).await
    }
    async fn claim_run(&self, run: &RunRecord) -> Result<Result<(), RunHolder>, StateError> {
        if let Some(b) = &self.race {
            b.wait().await;
        }
        self.write()?;
        self.inner.claim_run(run).await
    }
    async fn update_run(&self, run: &RunRecord) -> Result<(), StateError> {
        self.write()?;
        self.inner.update_run(run).await
    }
    async fn set_step_defs(&self, claim: &Claim, defs: &[StepDef]) -> Result<(), StateError> {
        self.write()?;
        self.inner.set_step_defs(claim, defs).await
    }
    async fn step_defs(&self, run_id: &str) -> Result<Vec<StepDef>, StateError> {
        self.inner.step_defs(run_id).await
    }
    async fn heartbeat(&self, claim: &Claim) -> Result<(), StateError> {
        // Not counted: its timing is the clock's, not the engine's.
        self.alive()?;
        self.inner.heartbeat(claim).await
    }
    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        self.inner.get_run(id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StateError> {
        self.inner.list_runs(filter).await
    }
    async fn put_step(&self, claim: &Claim, rec: &StepRecord) -> Result<(), StateError> {
        self.write()?;
        self.inner.put_step(claim, rec).await
    }
    async fn put_steps(&self, claim: &Claim, recs: &[StepRecord]) -> Result<(), StateError> {
        // One transaction: one write, all of it or nothing.
        self.write()?;
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
        self.alive()?;
        self.inner.try_lock(name, holder, lease).await
    }
    async fn release_lock(&self, name: &str, claim: &Claim) -> Result<(), StateError> {
        self.alive()?;
        self.inner.release_lock(name, claim).await
    }
    async fn release_locks(&self, claim: &Claim) -> Result<(), StateError> {
        self.alive()?;
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

// ---------------------------------------------------------------- driving a case

struct Case<'a> {
    steps: &'a [SimStep],
    path: &'a Path,
    logs: &'a Path,
    world: Arc<World>,
    segs: usize,
}

impl Case<'_> {
    fn opts(&mut self) -> RunOptions {
        let seg = self.segs;
        self.segs += 1;
        let fails = self.steps.iter().map(|s| (s.id.clone(), s.fails)).collect();
        RunOptions {
            logs: self.logs.to_path_buf(),
            actions: Some(ActionPort(Arc::new(Script {
                world: self.world.clone(),
                seg,
                fails,
            }))),
            ..RunOptions::default()
        }
    }

    /// Approves every waiting gate of a paused run.
    async fn approve(&self, store: &MemoryStore, run_id: &str) {
        for rec in store.steps(run_id).await.expect("steps") {
            if rec.status == StepStatus::Waiting && rec.item.is_none() {
                store
                    .record_approval(&Approval {
                        run_id: run_id.to_string(),
                        step_id: rec.step_id.clone(),
                        decision: Decision::Approved,
                        by: "sim".into(),
                        at: cairn_state::now(),
                    })
                    .await
                    .expect("approve");
            }
        }
    }

    /// Resumes (approving gates) until the run has ended.
    async fn finish(&mut self, store: &Arc<MemoryStore>, run_id: &str) {
        for _ in 0..12 {
            let run = store.get_run(run_id).await.expect("get").expect("run");
            match run.status {
                RunStatus::Succeeded | RunStatus::Failed => return,
                RunStatus::Paused => self.approve(store, run_id).await,
                _ => {}
            }
            let templates = Arc::new(cairn_template::Templates::new());
            let r = resume(
                run_id,
                templates,
                store.clone(),
                Arc::new(NoSink),
                self.opts(),
                &ResumeOptions::default(),
            )
            .await;
            match r {
                Ok(_) => {}
                Err(e) => panic!("resume refused: {e}\n{}", yaml(self.steps)),
            }
        }
        panic!("the run never ended\n{}", yaml(self.steps));
    }
}

/// Final status per step (whole-step records), and of the run.
async fn outcome(store: &MemoryStore, run_id: &str) -> (BTreeMap<String, StepStatus>, RunStatus) {
    let steps = store
        .steps(run_id)
        .await
        .expect("steps")
        .into_iter()
        .filter(|r| r.item.is_none())
        .map(|r| (r.step_id, r.status))
        .collect();
    let run = store.get_run(run_id).await.expect("get").expect("run");
    (steps, run.status)
}

async fn start(case: &mut Case<'_>, store: Arc<dyn Store>) -> Option<String> {
    let templates = Arc::new(cairn_template::Templates::new());
    let (checked, _) = cairn_model::load(case.path, &templates).expect("valid runbook");
    let inv = Invocation {
        sets: vec![],
        inputs_file: None,
    };
    let opts = case.opts();
    match execute(
        Arc::new(checked),
        templates,
        &inv,
        store,
        Arc::new(NoSink),
        opts,
    )
    .await
    {
        Ok(report) => Some(report.run_id),
        Err(_) => None,
    }
}

/// The run made by `store` (there is one).
async fn the_run(store: &MemoryStore) -> Option<String> {
    let runs = store.list_runs(&RunFilter::default()).await.expect("list");
    runs.into_iter().next().map(|r| r.id)
}

struct Stats {
    cases: usize,
    crash_points: usize,
    races: usize,
    resumes: usize,
}

async fn simulate(seed: u64, stats: &mut Stats) {
    let mut rng = StdRng::seed_from_u64(seed);
    let steps = generate(&mut rng);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sim.yaml");
    std::fs::write(&path, yaml(&steps)).expect("write runbook");
    let logs = dir.path().join("logs");
    let text = yaml(&steps);
    let ctx = |what: &str| format!("seed {seed}: {what}\n{text}");

    // The reference: no crash.
    let reference_store = Arc::new(MemoryStore::new());
    let mut reference = Case {
        steps: &steps,
        path: &path,
        logs: &logs,
        world: Arc::new(World::default()),
        segs: 0,
    };
    let counting = Arc::new(Faulty::new(reference_store.clone(), usize::MAX));
    start(&mut reference, counting.clone()).await;
    let run = the_run(&reference_store).await.expect("reference run");
    let first_writes = counting.writes.load(Ordering::SeqCst);
    reference.finish(&reference_store, &run).await;
    let want = outcome(&reference_store, &run).await;

    for crash_at in 1..=first_writes + 1 {
        stats.crash_points += 1;
        let inner = Arc::new(MemoryStore::new());
        let world = Arc::new(World::default());
        let mut case = Case {
            steps: &steps,
            path: &path,
            logs: &logs,
            world: world.clone(),
            segs: 0,
        };
        let faulty = Arc::new(Faulty::new(inner.clone(), crash_at));
        start(&mut case, faulty.clone()).await;
        let Some(run) = the_run(&inner).await else {
            // Crashed before the run was recorded: nothing to resume, nothing ran.
            let ran = world.log.lock().map(|l| l.len()).unwrap_or(0);
            assert_eq!(ran, 0, "{}", ctx("a step ran before its run was recorded"));
            continue;
        };
        let at_crash = inner.steps(&run).await.expect("steps");
        let crashed_run = inner.get_run(&run).await.expect("get").expect("run");
        let crashed = faulty.dead.load(Ordering::SeqCst);
        if crashed && crashed_run.status == RunStatus::Running {
            // The process is dead: a reader marks the run interrupted.
            let mut dead = crashed_run.clone();
            dead.status = RunStatus::Interrupted;
            inner.update_run(&dead).await.expect("mark interrupted");
        }
        let crash_seg = case.segs;
        // Now and then two resumes race for the crashed run.
        if crashed && crash_at % 4 == 1 && crashed_run.status != RunStatus::Succeeded {
            if crashed_run.status == RunStatus::Paused {
                case.approve(&inner, &run).await;
            }
            stats.races += 1;
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    let mut f = Faulty::new(inner.clone(), usize::MAX);
                    f.race = Some(barrier.clone());
                    let store: Arc<dyn Store> = Arc::new(f);
                    let (opts, run) = (case.opts(), run.clone());
                    tokio::spawn(async move {
                        resume(
                            &run,
                            Arc::new(cairn_template::Templates::new()),
                            store,
                            Arc::new(NoSink),
                            opts,
                            &ResumeOptions::default(),
                        )
                        .await
                    })
                })
                .collect();
            let mut won = 0;
            let mut refused = 0;
            for r in racers {
                match r.await.expect("resume task") {
                    Ok(Resumed::Ran(_)) => won += 1,
                    Err(ResumeError::Busy(_)) => refused += 1,
                    Ok(Resumed::AlreadyDone { .. }) => panic!("{}", ctx("a racer found it done")),
                    Err(e) => panic!("{}", ctx(&format!("a racer failed: {e}"))),
                }
            }
            assert_eq!((won, refused), (1, 1), "{}", ctx("two resumes raced"));
        }
        case.finish(&inner, &run).await;
        stats.resumes += case.segs - 1;
        let got = outcome(&inner, &run).await;
        assert_eq!(
            got,
            want,
            "{}",
            ctx(&format!(
                "crash before write {crash_at}: outcome differs from the crash-free run"
            ))
        );
        check_log(
            &steps,
            &world,
            &at_crash,
            crash_seg,
            &ctx(&format!("crash before write {crash_at}")),
        );
    }
    check_log(
        &steps,
        &reference.world,
        &[],
        usize::MAX,
        &ctx("crash-free run"),
    );
    stats.cases += 1;
}

/// The rules that hold on the executions of one case (see the file's docs).
fn check_log(
    steps: &[SimStep],
    world: &World,
    at_crash: &[StepRecord],
    crash_seg: usize,
    ctx: &str,
) {
    let log = world.log.lock().map(|l| l.clone()).unwrap_or_default();
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    // Per attempt of the run (segment): at most `attempts` executions of a step or item.
    let mut per: HashMap<(usize, &str, Option<usize>), u32> = HashMap::new();
    for e in &log {
        *per.entry((e.seg, e.step.as_str(), e.item)).or_default() += 1;
    }
    for ((seg, step, item), n) in &per {
        let s = &steps[index[step]];
        assert!(
            n <= &s.attempts,
            "{ctx}\nsegment {seg}: `{step}` item {item:?} ran {n} times (attempts {})",
            s.attempts
        );
    }
    // No step started before a step it needs (directly, or through steps restored without
    // running, such as an answered approval) that ran in the same segment had finished.
    let mut above: Vec<HashSet<usize>> = vec![HashSet::new(); steps.len()];
    for i in 0..steps.len() {
        if steps[i].finally {
            continue;
        }
        for p in steps[i].parents(i) {
            let up = above[p].clone();
            above[i].insert(p);
            above[i].extend(up);
        }
    }
    for e in &log {
        let i = index[e.step.as_str()];
        if steps[i].finally {
            continue;
        }
        for &p in &above[i] {
            let pid = steps[p].id.as_str();
            for pe in log.iter().filter(|x| x.seg == e.seg && x.step == pid) {
                assert!(
                    pe.end < e.start,
                    "{ctx}\nsegment {}: `{}` started at {} before `{pid}` ended at {}",
                    e.seg,
                    e.step,
                    e.start,
                    pe.end
                );
            }
        }
    }
    // Outputs read downstream are those of the latest successful execution before the read.
    for e in &log {
        let i = index[e.step.as_str()];
        for (k, &p) in steps[i].reads.iter().enumerate() {
            let pid = steps[p].id.as_str();
            let latest = log
                .iter()
                .filter(|x| x.step == pid && x.ok && x.end < e.start)
                .max_by_key(|x| x.end)
                .map(|x| x.token.clone());
            assert_eq!(
                e.args.get(k + 1).cloned(),
                latest,
                "{ctx}\n`{}` (segment {}) read `{pid}`'s output {:?}",
                e.step,
                e.seg,
                e.args
            );
        }
    }
    // After the crash, a step that had succeeded runs again only below a step that had not.
    if crash_seg == usize::MAX {
        return;
    }
    let done: HashSet<(&str, Option<u32>)> = at_crash
        .iter()
        .filter(|r| r.status == StepStatus::Succeeded)
        .map(|r| (r.step_id.as_str(), r.item))
        .collect();
    let whole_ok = |i: usize| done.contains(&(steps[i].id.as_str(), None));
    let mut below_rerun = vec![false; steps.len()];
    for i in 0..steps.len() {
        if steps[i].finally {
            continue;
        }
        below_rerun[i] = steps[i]
            .parents(i)
            .into_iter()
            .any(|p| !whole_ok(p) || below_rerun[p]);
    }
    for e in log.iter().filter(|e| e.seg >= crash_seg) {
        let i = index[e.step.as_str()];
        if steps[i].finally || below_rerun[i] {
            continue;
        }
        let key = (e.step.as_str(), e.item.map(|k| k as u32));
        assert!(
            !done.contains(&(e.step.as_str(), None)) && !done.contains(&key),
            "{ctx}\n`{}` item {:?} had succeeded before the crash and ran again (segment {}, attempt {})",
            e.step,
            e.item,
            e.seg,
            e.attempt
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_checkpoint_write_then_resume() {
    let cases: u64 = std::env::var("SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    let seed: u64 = std::env::var("SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let mut stats = Stats {
        cases: 0,
        crash_points: 0,
        races: 0,
        resumes: 0,
    };
    for k in 0..cases {
        simulate(seed.wrapping_add(k), &mut stats).await;
    }
    println!(
        "simulation: {} runbooks, {} crash points exercised, {} resumes, {} races of two resumes (seed {seed})",
        stats.cases, stats.crash_points, stats.resumes, stats.races
    );
    assert!(stats.crash_points > 0);
}
