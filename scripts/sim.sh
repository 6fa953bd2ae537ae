#!/usr/bin/env bash
# The simulation test of durable execution with many more runbooks than CI runs:
#   bash scripts/sim.sh                 # 2,000 runbooks, each resume crashed at every write
#   SIM_CASES=100000 SIM_SEED=7 bash scripts/sim.sh
#   SIM_STALE_EVERY=1 bash scripts/sim.sh   # also a stale engine at every action of each first run
# It prints the number of crash points exercised and of each shape generated; a failure prints
# the seed, the runbook and the command that runs that seed alone. Knobs: docs/simulation.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export SIM_CASES="${SIM_CASES:-2000}"
export SIM_RECRASH="${SIM_RECRASH:-1}"
exec cargo test -p cairn-engine --test sim crash_at -- --nocapture
