//! The in-memory store: the same semantics as the database backends, held in a mutex and gone
//! with the process. For dry tests and for benchmarking the engine without I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::Store;
use crate::codec::{MAX_CANDIDATES, pick_unique, prefix_forms};
use crate::error::StateError;
use crate::lock::{
    HolderRun, judged, lease_end, lock_is_free, needs_sighting, now, taken_since, trunc,
};
use crate::sighting::{Now, Seen, Sighting, look};
use crate::types::{
    Action, Approval, Claim, LockHolder, LockInfo, RunFilter, RunHolder, RunRecord, RunStatus,
    StepDef, StepRecord,
};

/// A [`Store`] in memory. `open("memory:")` makes one.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: BTreeMap<String, RunRecord>,
    defs: HashMap<String, Vec<StepDef>>,
    // Per run, in first-write order, like the SQL backends' insertion order.
    steps: HashMap<String, Vec<StepRecord>>,
    // Per run, where each (step, item) is in `steps`: a checkpoint costs the same at the
    // 10,000th step as at the first.
    step_index: HashMap<String, HashMap<(String, Option<u32>), usize>>,
    locks: BTreeMap<String, (LockInfo, Duration)>,
    approvals: HashMap<String, Vec<Approval>>,
    actions: HashMap<String, Vec<Action>>,
    // Per run of another host, what this process has seen of its heartbeat counter.
    sightings: HashMap<String, Sighting>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here panics half-way through an update, so a poisoned lock still guards
        // consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// The run, if `claim` still holds it.
    fn claimed(&mut self, claim: &Claim) -> Result<&mut RunRecord, StateError> {
        let run = self.run_mut(&claim.run_id)?;
        if run.attempt != claim.attempt {
            return Err(StateError::Fenced {
                run_id: claim.run_id.clone(),
                attempt: claim.attempt,
                holder: run.holder(),
            });
        }
        Ok(run)
    }

    /// Locks are released only under the run's current claim; a lock whose run is not in the
    /// store, by its run id alone.
    fn may_release(&mut self, claim: &Claim) -> Result<(), StateError> {
        if self.runs.contains_key(&claim.run_id) {
            self.claimed(claim)?;
        }
        Ok(())
    }

    /// A sub-run is created or claimed only under its parent's current claim.
    fn under_parent(&mut self, run: &RunRecord) -> Result<(), StateError> {
        if let Some(parent) = run.parent_claim() {
            self.claimed(&parent)?;
        }
        Ok(())
    }

    /// A claim of a run fences every engine that holds one of its unfinished sub-runs (at any
    /// depth): their attempts move on, so their next write is refused.
    /// Each run once, never the run itself: parents edited into a circle end the walk.
    fn fence_descendants(&mut self, id: &str) {
        let mut seen = std::collections::HashSet::from([id.to_string()]);
        let mut parents = vec![id.to_string()];
        while let Some(parent) = parents.pop() {
            for run in self.runs.values_mut() {
                if run.parent_run.as_deref() == Some(parent.as_str()) && seen.insert(run.id.clone())
                {
                    parents.push(run.id.clone());
                    if !matches!(run.status, RunStatus::Succeeded | RunStatus::Failed) {
                        run.attempt += 1;
                    }
                }
            }
        }
    }

    fn run_mut(&mut self, id: &str) -> Result<&mut RunRecord, StateError> {
        self.runs
            .get_mut(id)
            .ok_or_else(|| StateError::RunNotFound(id.to_string()))
    }

    /// The run as a reader should see it, saving `interrupted` when its process is gone.
    fn observe(&mut self, id: &str) -> Option<RunRecord> {
        self.observe_seen(id).map(|(run, _)| run)
    }

    /// [`Inner::observe`], with what was seen of the run's heartbeat counter.
    fn observe_seen(&mut self, id: &str) -> Option<(RunRecord, Seen)> {
        let run = self.runs.get(id)?.clone();
        let seen = if needs_sighting(run.status, &run.host) {
            let (seen, keep) = look(
                self.sightings.get(id),
                run.heartbeat_seq,
                Now::read().as_ref(),
            );
            if let Some(keep) = keep {
                self.sightings.insert(id.to_string(), keep);
            }
            seen
        } else {
            Seen::First
        };
        let run = judged(run, seen, now());
        if let Some(stored) = self.runs.get_mut(id) {
            stored.status = run.status;
        }
        Some((run, seen))
    }
}

// Times are kept at microsecond precision, like the SQL backends, so a record read back
// compares equal to the one written whatever the backend.
fn normalized_run(run: &RunRecord) -> RunRecord {
    let mut r = run.clone();
    r.started_at = trunc(r.started_at);
    r.finished_at = r.finished_at.map(trunc);
    r.heartbeat_at = trunc(r.heartbeat_at);
    r.claimed_at = trunc(r.claimed_at);
    // Written by the store alone, as in the SQL backends.
    r.unconfirmed = None;
    r.parent_attempt = None;
    r
}

fn normalized_step(rec: &StepRecord) -> StepRecord {
    let mut r = rec.clone();
    r.started_at = r.started_at.map(trunc);
    r.finished_at = r.finished_at.map(trunc);
    r
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_run(&self, run: &RunRecord, defs: &[StepDef]) -> Result<(), StateError> {
        let mut inner = self.lock();
        if inner.runs.contains_key(&run.id) {
            return Err(StateError::RunExists(run.id.clone()));
        }
        inner.under_parent(run)?;
        let mut new = normalized_run(run);
        new.heartbeat_seq = 0;
        inner.runs.insert(run.id.clone(), new);
        inner.defs.insert(run.id.clone(), defs.to_vec());
        Ok(())
    }

    async fn claim_run(&self, run: &RunRecord) -> Result<Result<(), RunHolder>, StateError> {
        let mut inner = self.lock();
        inner.run_mut(&run.id)?;
        inner.under_parent(run)?;
        let stored = inner.run_mut(&run.id)?;
        // A sub-run taken up under its parent's claim may still be stored `running` by the
        // engine that lost the parent, which that claim fenced: it is the parent's holder's.
        let under_parent = run.parent_claim().is_some();
        if stored.attempt != run.attempt.saturating_sub(1)
            || (stored.status == RunStatus::Running && !under_parent)
        {
            return Ok(Err(stored.holder()));
        }
        let new = normalized_run(run);
        *stored = RunRecord {
            started_at: stored.started_at,
            heartbeat_at: stored.heartbeat_at.max(new.heartbeat_at),
            heartbeat_seq: stored.heartbeat_seq + 1,
            parent_run: stored.parent_run.clone(),
            parent_step: stored.parent_step.clone(),
            labels: stored.labels.clone(),
            ..new
        };
        inner.fence_descendants(&run.id);
        Ok(Ok(()))
    }

    async fn update_run(&self, run: &RunRecord) -> Result<(), StateError> {
        let mut inner = self.lock();
        let stored = inner.claimed(&run.claim())?;
        let new = normalized_run(run);
        *stored = RunRecord {
            started_at: stored.started_at,
            heartbeat_at: stored.heartbeat_at.max(new.heartbeat_at),
            heartbeat_seq: stored.heartbeat_seq + 1,
            claimed_at: stored.claimed_at,
            parent_step: stored.parent_step.clone(),
            labels: stored.labels.clone(),
            ..new
        };
        Ok(())
    }

    async fn set_step_defs(&self, claim: &Claim, defs: &[StepDef]) -> Result<(), StateError> {
        let mut inner = self.lock();
        inner.claimed(claim)?;
        inner.defs.insert(claim.run_id.clone(), defs.to_vec());
        Ok(())
    }

    async fn step_defs(&self, run_id: &str) -> Result<Vec<StepDef>, StateError> {
        Ok(self.lock().defs.get(run_id).cloned().unwrap_or_default())
    }

    async fn heartbeat(&self, claim: &Claim) -> Result<(), StateError> {
        let mut inner = self.lock();
        let now = now();
        let run_id = claim.run_id.as_str();
        let run = inner.claimed(claim)?;
        run.heartbeat_at = run.heartbeat_at.max(now);
        run.heartbeat_seq += 1;
        for (info, lease) in inner.locks.values_mut() {
            if info.run_id == run_id {
                info.lease_until = lease_end(now, *lease);
            }
        }
        Ok(())
    }

    async fn get_run(&self, id_or_prefix: &str) -> Result<Option<RunRecord>, StateError> {
        let mut inner = self.lock();
        if id_or_prefix.is_empty() {
            return Ok(None);
        }
        if inner.runs.contains_key(id_or_prefix) {
            return Ok(inner.observe(id_or_prefix));
        }
        let (p, upper) = prefix_forms(id_or_prefix);
        let ids: Vec<String> = inner
            .runs
            .keys()
            .filter(|id| id.starts_with(&p) || id.starts_with(&upper))
            .take(usize::try_from(MAX_CANDIDATES).unwrap_or(10))
            .cloned()
            .collect();
        match pick_unique(id_or_prefix, ids)? {
            Some(id) => Ok(inner.observe(&id)),
            None => Ok(None),
        }
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StateError> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner.runs.keys().cloned().collect();
        let mut runs: Vec<RunRecord> = ids
            .iter()
            .filter_map(|id| inner.observe(id))
            .filter(|r| filter.runbook.as_ref().is_none_or(|b| &r.runbook == b))
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .filter(|r| r.has_labels(&filter.labels))
            .collect();
        runs.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
        if let Some(limit) = filter.limit {
            runs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Ok(runs)
    }

    async fn put_step(&self, claim: &Claim, rec: &StepRecord) -> Result<(), StateError> {
        self.put_steps(claim, std::slice::from_ref(rec)).await
    }

    async fn put_steps(&self, claim: &Claim, recs: &[StepRecord]) -> Result<(), StateError> {
        let mut inner = self.lock();
        // Checked before anything is written: all or nothing.
        inner.claimed(claim)?;
        let Inner {
            steps, step_index, ..
        } = &mut *inner;
        let steps = steps.entry(claim.run_id.clone()).or_default();
        let index = step_index.entry(claim.run_id.clone()).or_default();
        for rec in recs {
            debug_assert_eq!(claim.run_id, rec.run_id, "a claim fences its own run only");
            let new = normalized_step(rec);
            match index.get(&(rec.step_id.clone(), rec.item)) {
                Some(&at) => steps[at] = new,
                None => {
                    index.insert((rec.step_id.clone(), rec.item), steps.len());
                    steps.push(new);
                }
            }
        }
        Ok(())
    }

    async fn sub_runs(&self, parent_run: &str) -> Result<Vec<RunRecord>, StateError> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner
            .runs
            .values()
            .filter(|r| r.parent_run.as_deref() == Some(parent_run))
            .map(|r| r.id.clone())
            .collect();
        let mut runs: Vec<RunRecord> = ids.iter().filter_map(|id| inner.observe(id)).collect();
        runs.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(runs)
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StateError> {
        Ok(self.lock().steps.get(run_id).cloned().unwrap_or_default())
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &LockHolder,
        lease: Duration,
    ) -> Result<Result<(), LockInfo>, StateError> {
        let mut inner = self.lock();
        let now = now();
        let held = inner.locks.get(name).cloned();
        let since = match held {
            None => now,
            Some((held, held_for)) => {
                let run = inner.observe_seen(&held.run_id).map(|(r, seen)| HolderRun {
                    status: r.status,
                    host: r.host,
                    pid: r.pid,
                    seen,
                });
                if !lock_is_free(&held, held_for, run.as_ref(), holder, now) {
                    return Ok(Err(held));
                }
                taken_since(&held, &holder.run_id, now)
            }
        };
        let info = LockInfo {
            name: name.to_string(),
            run_id: holder.run_id.clone(),
            host: holder.host.clone(),
            pid: holder.pid,
            since,
            lease_until: lease_end(now, lease),
        };
        inner.locks.insert(name.to_string(), (info, lease));
        Ok(Ok(()))
    }

    async fn release_lock(&self, name: &str, claim: &Claim) -> Result<(), StateError> {
        let mut inner = self.lock();
        inner.may_release(claim)?;
        if inner
            .locks
            .get(name)
            .is_some_and(|(l, _)| l.run_id == claim.run_id)
        {
            inner.locks.remove(name);
        }
        Ok(())
    }

    async fn release_locks(&self, claim: &Claim) -> Result<(), StateError> {
        let mut inner = self.lock();
        inner.may_release(claim)?;
        inner.locks.retain(|_, (l, _)| l.run_id != claim.run_id);
        Ok(())
    }

    async fn locks(&self) -> Result<Vec<LockInfo>, StateError> {
        Ok(self.lock().locks.values().map(|(l, _)| l.clone()).collect())
    }

    async fn record_approval(&self, a: &Approval) -> Result<(), StateError> {
        let mut inner = self.lock();
        inner.run_mut(&a.run_id)?;
        let mut a = a.clone();
        a.at = trunc(a.at);
        inner.approvals.entry(a.run_id.clone()).or_default().push(a);
        Ok(())
    }

    async fn record_action(&self, a: &Action) -> Result<(), StateError> {
        let mut inner = self.lock();
        inner.run_mut(&a.run_id)?;
        let mut a = a.clone();
        a.at = trunc(a.at);
        inner.actions.entry(a.run_id.clone()).or_default().push(a);
        Ok(())
    }

    async fn actions(&self, run_id: &str) -> Result<Vec<Action>, StateError> {
        Ok(self.lock().actions.get(run_id).cloned().unwrap_or_default())
    }

    async fn approvals(&self, run_id: &str) -> Result<Vec<Approval>, StateError> {
        Ok(self
            .lock()
            .approvals
            .get(run_id)
            .cloned()
            .unwrap_or_default())
    }
}
