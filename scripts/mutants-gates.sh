#!/usr/bin/env bash
# Plants each deliberate bug of docs/testing.md ("Approval gates in the simulation") alone, runs
# the simulation at the CI case count, and says whether it was killed. Restores every file.
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${SIM_CASES:-15}"
plant() { # FILE OLD NEW NAME
  local f=$1 name=$4
  cp "$f" "$f.orig"
  python3 - "$f" "$2" "$3" <<'PY'
import sys
p, old, new = sys.argv[1:4]
s = open(p).read()
assert old in s, f"mutation point not found in {p}"
open(p, "w").write(s.replace(old, new, 1))
PY
  if SIM_CASES=$cases cargo test -q -p cairn-engine --test sim crash_at >/tmp/cairn-mutant.log 2>&1; then
    echo "SURVIVED  $name"
  else
    echo "killed    $name ($(grep -oE 'seed [0-9]+' /tmp/cairn-mutant.log | head -1))"
  fi
  mv "$f.orig" "$f"
}
plant crates/engine/src/resume.rs '                            Some(format!("rejected by {by}")),
                            Hold::Declined,' '                            Some(format!("rejected by {by}")),
                            Hold::No,' "a rejection read on resume is not held"
plant crates/engine/src/resume.rs '            Some(StepStatus::Waiting) => false,
            Some(StepStatus::Failed) => !concluded(i),' '            Some(StepStatus::Waiting) => false,
            Some(StepStatus::Failed) => true,' "a tolerated failure is not a conclusion on resume"
