#!/usr/bin/env bash
# The simulation's power, measured: plants each deliberate bug below alone, runs the simulation
# test (crates/engine/tests/sim.rs, every test in it) at the CI case count, and says whether the
# bug was caught ("killed") or not ("SURVIVED"). Every file is restored, also on Ctrl-C.
#
#   bash scripts/mutants-sim.sh            # every mutant (about 1-2 minutes each on two cores)
#   bash scripts/mutants-sim.sh fenced     # only those whose name contains "fenced"
#   MUTANTS_CHECK=1 bash scripts/mutants-sim.sh   # only check that every snippet is found
#
# A mutant is a search-and-replace of a code snippet, looked up in every source file of the
# crate it names: the snippet must be found exactly once there, so a mutant follows its code when
# the code moves between files; one whose snippet is gone prints MISSING (update it, do not
# drop it). The results and the reasons for the equivalent ones are in docs/simulation.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${SIM_CASES:-100}"
only="${1:-}"
logs="${CARGO_TARGET_DIR:-target}/mutants"
mkdir -p "$logs"

planted=""
restore() {
  if [ -n "$planted" ] && [ -f "$planted.mutant-orig" ]; then
    mv "$planted.mutant-orig" "$planted"
    # Newer than the mutant's build: else cargo keeps the mutant's compiled code (the copy has
    # the time it was made, before that build) and the next mutant runs with both bugs.
    touch "$planted"
  fi
  planted=""
}
trap restore EXIT
trap 'restore; exit 130' INT TERM

mutant() { # NAME CRATE-DIR OLD NEW
  local name=$1 dir=$2 old=$3 new=$4 file slug
  case "$name" in *"$only"*) ;; *) return 0 ;; esac
  slug=$(printf '%s' "$name" | tr -c 'a-zA-Z0-9' '-' | cut -c1-60)
  if ! file=$(python3 - "$dir" "$old" <<'PY'
import pathlib, sys
root, old = sys.argv[1], sys.argv[2]
hits = [(p, p.read_text().count(old)) for p in sorted(pathlib.Path(root).rglob("*.rs"))]
hits = [(p, n) for p, n in hits if n]
if len(hits) != 1 or hits[0][1] != 1:
    sys.exit(1)
print(hits[0][0])
PY
  ); then
    echo "MISSING   $name (snippet not found exactly once under $dir)"
    return 0
  fi
  if [ -n "${MUTANTS_CHECK:-}" ]; then
    echo "found     $name ($file)"
    return 0
  fi
  cp "$file" "$file.mutant-orig"
  planted=$file
  python3 - "$file" "$old" "$new" <<'PY'
import sys
p, old, new = sys.argv[1:4]
s = open(p).read()
open(p, "w").write(s.replace(old, new, 1))
PY
  local log="$logs/$slug.log" rc=0
  if ! cargo test -q -p cairn-engine --test sim --no-run >"$log" 2>&1; then
    echo "BROKEN    $name (does not compile: $log)"
    restore
    return 0
  fi
  # The generated cases first (a failure ends them early), then the named seeds.
  SIM_CASES=$cases timeout 1500 cargo test -q -p cairn-engine --test sim crash_at >"$log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    timeout 1500 cargo test -q -p cairn-engine --test sim -- --skip crash_at >>"$log" 2>&1 || rc=$?
  fi
  restore
  if [ "$rc" = 0 ]; then
    echo "SURVIVED  $name"
  elif [ "$rc" = 124 ]; then
    echo "killed    $name (the simulation hung: timeout)"
  else
    local why
    why=$(grep -m1 -oE 'seed [0-9]+: [^#]{0,160}' "$log" || grep -m1 -E 'panicked|assert' "$log" || true)
    echo "killed    $name (${why:-see $log})"
  fi
}

E=crates/engine/src
S=crates/state/src

# ---------------------------------------------------------------- the bugs the simulation missed once
mutant "on_failure: continue is an abort for the run's verdict" $E \
'&& (o.hold == Hold::Declined || on_failure(shared, i) == OnFailure::Abort)' \
'&& (o.hold == Hold::Declined || on_failure(shared, i) == on_failure(shared, i))'
mutant "on_failure: continue is an abort for the DAG walk" $E \
'(o.status == Status::Failed && on_failure(shared, p) == OnFailure::Abort)' \
'(o.status == Status::Failed && on_failure(shared, p) == on_failure(shared, p))'
mutant "a for_each item's record is lost" $E \
'    } else {
        shared.checkpoint(&rec).await;
        events.iter().for_each(|e| shared.sink.emit(e));' \
'    } else if item != Some(0) {
        shared.checkpoint(&rec).await;
        events.iter().for_each(|e| shared.sink.emit(e));'
mutant "an in-doubt step is recorded succeeded on resume" $E \
'            StepStatus::Running if !again.contains(&i) && !step => in_doubt.push(format!(' \
'            StepStatus::Running if !again.contains(&i) && step => {
                let mut r = (*rec).clone();
                r.status = StepStatus::Succeeded;
                skipped.push(r);
                outcomes[i] = Some(Outcome::restored(Status::Succeeded, Json::Null, Json::Null, None));
            }
            StepStatus::Running if !again.contains(&i) && !step => in_doubt.push(format!('
mutant "a stale writer is not fenced (memory store)" $S \
'        if run.attempt != claim.attempt {' \
'        if run.attempt != claim.attempt && claim.attempt == 0 {'
mutant "a stale writer is not fenced (SQL checkpoints)" $S \
'(SELECT 1 FROM cairn_runs WHERE id = $1 AND attempt = $2{run_row_lock}) AS owner' \
'(SELECT 1 FROM cairn_runs WHERE id = $1 AND (attempt = $2 OR 1 = 1){run_row_lock}) AS owner'
mutant "a stale writer is not fenced (SQL run update)" $S \
'", parent_run = $13 WHERE id = $1 AND attempt = $16"' \
'", parent_run = $13 WHERE id = $1 AND (attempt = $16 OR 1 = 1)"'
mutant "a run's own update is not fenced (memory store)" $S \
'        let stored = inner.claimed(&run.claim())?;
        let new = normalized_run(run);' \
'        let stored = inner.run_mut(&run.id)?;
        let new = normalized_run(run);'
mutant "two claims of one attempt both win (memory store)" $S \
'        if stored.attempt != run.attempt.saturating_sub(1)
            || (stored.status == RunStatus::Running && !under_parent)
        {' \
'        if stored.attempt == u32::MAX {'
mutant "a claim does not fence the run's sub-runs (memory store)" $S \
'                        run.attempt += 1;' \
'                        run.attempt += 0;'
mutant "a claim does not fence the run's sub-runs (SQL)" $S \
'                     UPDATE cairn_runs SET attempt = attempt + 1 \' \
'                     UPDATE cairn_runs SET attempt = attempt + 0 \'
mutant "a sub-run is created under a lost parent claim (memory store)" $S \
'            return Err(StateError::RunExists(run.id.clone()));
        }
        inner.under_parent(run)?;' \
'            return Err(StateError::RunExists(run.id.clone()));
        }'
mutant "a sub-run's \"no\" is retried by the parent's retry" $E \
'            || last.hold == Hold::Declined;' \
'            ;'

# ---------------------------------------------------------------- resume
mutant "resume: a succeeded step runs again" $E \
'            Some(StepStatus::Succeeded) => false,
            Some(StepStatus::Skipped) => blocked[i],' \
'            Some(StepStatus::Succeeded) => true,
            Some(StepStatus::Skipped) => blocked[i],'
mutant "resume: a step that is not idempotent runs again unasked" $E \
'            StepStatus::Running if !again.contains(&i) && !step => in_doubt.push(format!(' \
'            StepStatus::Running if !again.contains(&i) && !step && false => in_doubt.push(format!('
mutant "resume: a failure with retries left is a conclusion" $E \
'&& (fan_out || r.attempt >= actions[i].retry.attempts)' \
'&& (fan_out || r.attempt >= 1)'
mutant "resume: a tolerated failure is not a conclusion" $E \
'            Some(StepStatus::Waiting) => false,
            Some(StepStatus::Failed) => !concluded(i),' \
'            Some(StepStatus::Waiting) => false,
            Some(StepStatus::Failed) => true,'
mutant "resume: a rejection read on resume is not held" $E \
'                            Some(format!("rejected by {by}")),
                            Hold::Declined,' \
'                            Some(format!("rejected by {by}")),
                            Hold::No,'
mutant "resume: a restored step's children do not run again" $E \
'            && checked.dag.parents(i).into_iter().any(|p| reruns[p])' \
'            && checked.dag.parents(i).into_iter().any(|p| reruns[p] && false)'
mutant "resume: for_each items that succeeded run again" $E \
'        (self.items.get(k) == Some(item))' \
'        (self.items.get(k) == Some(item) && k == usize::MAX)'
mutant "resume: an item's earlier record is kept though its value changed" $E \
'        (self.items.get(k) == Some(item))' \
'        (self.items.get(k).is_some() || item.is_null())'
mutant "resume: a step asked to run again keeps its old record" $E \
'            rec.status = StepStatus::Pending;
            rec.started_at = None;' \
'            rec.started_at = None;'
mutant "resume: records changed before the claim go unnoticed" $E \
'    if store.steps(&id).await? != records {' \
'    if store.steps(&id).await?.len() == usize::MAX {'

# ---------------------------------------------------------------- the DAG walk
mutant "DAG walk: a step's children start when it starts" $E \
'            let (sh, token) = (shared.clone(), cancel.clone());' \
'            release(dag, i, &mut waiting_on, &mut ready);
            let (sh, token) = (shared.clone(), cancel.clone());'
mutant "DAG walk: a restored step releases its children before its parents end" $E \
'        .filter(|&i| waiting_on[i] == 0)' \
'        .filter(|&i| waiting_on[i] == 0 || known[i])'
mutant "DAG walk: a waiting gate does not hold what needs it" $E \
'                            || o.status == Status::Waiting
                            || o.hold != Hold::No' \
'                            || o.hold != Hold::No'
mutant "DAG walk: a declined step holds back only as a failure" $E \
'                    .is_some_and(|o| o.hold == Hold::Declined)' \
'                    .is_some_and(|o| o.hold == Hold::Declined && o.status == Status::Failed)'

# ---------------------------------------------------------------- the step runner
mutant "step runner: no retries" $E \
'    let attempts = action.retry.attempts;' \
'    let attempts = action.retry.attempts.min(1);'
mutant "step runner: one retry too many" $E \
'    for attempt in 1..=attempts {' \
'    for attempt in 1..=attempts + 1 {'
mutant "step runner: an action starts though its running record was refused" $E \
'        if !shared.checkpoint(&rec).await {' \
'        if !shared.checkpoint(&rec).await && attempt == u32::MAX {'
mutant "step runner: a failed item does not fail its step" $E \
'    } else if failed.is_empty() {' \
'    } else if failed.len() < 2 {'
mutant "step runner: a step's end is not committed before what follows starts" $E \
'        let mut ends = self.ends.write().await;
        let batch = std::mem::take(&mut *ends);
        let mut recs: Vec<StepRecord> = batch.iter().map(|(r, _)| r.clone()).collect();
        recs.push(rec.clone());' \
'        let mut ends = self.ends.write().await;
        let batch = std::mem::take(&mut *ends);
        let mut recs: Vec<StepRecord> = batch.iter().map(|(r, _)| r.clone()).collect();
        recs.clear();
        recs.push(rec.clone());'
mutant "step runner: a sub-run is continued though its inputs changed" $E \
'        .filter(|r| inputs_now.as_ref() == Some(&r.inputs));' \
'        ;'
