#!/usr/bin/env bash
# Queue and worker benchmarks (not tests): see docs/performance.md, "## Workers".
#
#   bench/workers.sh [RUNS] [SAMPLES]     RUNS defaults to 2000, SAMPLES to 100
#
# (a) claim-to-start latency: one idle `cairn worker`; SAMPLES one-step runs submitted one at a
#     time with `cairn submit` (each after the previous ended). From the queue row's
#     `submitted_at` (the server's clock, in the submit's transaction) to its `claimed_at`
#     (the worker's claim), and to the step's `running` checkpoint (`cairn_steps.started_at`,
#     written just before the process is spawned): p50 and p99.
# (b) throughput: RUNS queued one-step `argv: [/bin/true]` runs (one submitted with `cairn
#     submit`, copied in SQL), then 1, 4 and 16 `cairn worker` processes started at once drain
#     them; runs/s = RUNS / (last finished_at - first claimed_at), all by the server's clock.
# (c) a routed step's overhead: a run of one `argv: [/bin/true]` step with `runs_on`, started by
#     `cairn run` with an idle worker whose labels match, against the same step run locally
#     (no `runs_on`): the difference of the step's duration (started_at to finished_at of its
#     checkpoints), medians over SAMPLES.
#
# Everything is measured in this one invocation, so that the figures can be compared side by side.
# Environment: CAIRN_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test); the state goes to
# a schema `cairn_bench_workers` of that database, created and dropped here (needs psql).
# CAIRN_BENCH_PROFILE=debug uses a debug build instead of a release build.
set -euo pipefail

RUNS=${1:-2000}
SAMPLES=${2:-100}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG=${CAIRN_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=cairn_bench_workers
PROFILE=${CAIRN_BENCH_PROFILE:-release}
export PGOPTIONS="--client-min-messages=warning"
export CAIRN_STATE="$PG?options=-csearch_path%3D$SCHEMA&sslmode=disable"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# Which parts to run (a, b, c) and the worker counts of (b).
PARTS=${CAIRN_BENCH_PARTS:-abc}
WORKER_COUNTS=${CAIRN_BENCH_WORKERS:-1 4 16}
# Each worker's --concurrency in (b).
CONC=${CAIRN_BENCH_CONCURRENCY:-1}

echo "building $PROFILE..." >&2
if [[ $PROFILE == release ]]; then
    cargo build --quiet --release -p cairn-cli --manifest-path "$ROOT/Cargo.toml" >&2
else
    cargo build --quiet -p cairn-cli --manifest-path "$ROOT/Cargo.toml" >&2
fi
CAIRN=$TARGET/$PROFILE/cairn

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-workers.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
sql() { psql -qAt "$PG" -c "SET search_path TO $SCHEMA; $1"; }
# A new schema; a worker of the previous part still closing its connections may hold a lock
# for a moment, so try a few times.
fresh() {
    for _ in 1 2 3 4 5; do
        psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null && return
        sleep 1
    done
    exit 1
}
# Starts N workers with the given extra arguments; their pids in PIDS.
start_workers() {
    local n=$1
    shift
    for ((w = 0; w < n; w++)); do
        "$CAIRN" worker "$@" >/dev/null 2>>"$WORK/workers.log" &
        PIDS+=($!)
    done
}
stop_workers() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
# Waits until N queue rows are done (at most $2 seconds).
wait_done() {
    local n=$1 limit=$2 t0=$SECONDS
    while (($(sql "SELECT count(*) FROM cairn_queue WHERE status = 'done'") < n)); do
        if ((SECONDS - t0 > limit)); then
            echo "only $(sql "SELECT count(*) FROM cairn_queue WHERE status = 'done'") of $n runs done after ${limit}s" >&2
            exit 1
        fi
        sleep 0.05
    done
}
# p50 and p99 (nearest rank) of the numbers on stdin, in ms
pct() {
    python3 -c '
import math, sys
xs = sorted(float(x) for x in sys.stdin.read().split())
r = lambda p: xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]
print(f"{r(50):.1f} | {r(99):.1f} | {xs[-1]:.1f}")'
}

cat >one.yaml <<'EOF'
cairn: 1
name: bench-one
steps:
  - id: only
    argv: [/bin/true]
EOF
cat >routed.yaml <<'EOF'
cairn: 1
name: bench-routed
steps:
  - id: only
    runs_on: { host: bench }
    argv: [/bin/true]
EOF

# --- (a) claim-to-start latency -------------------------------------------------------------
if [[ $PARTS == *a* ]]; then
fresh
echo "latency: $SAMPLES runs, one at a time, one idle worker" >&2
"$CAIRN" submit one.yaml >/dev/null # creates the tables
start_workers 1
wait_done 1 30
for ((i = 0; i < SAMPLES; i++)); do
    sleep 0.1 # the worker is idle again, waiting on LISTEN
    "$CAIRN" submit one.yaml >/dev/null
    wait_done $((i + 2)) 30
done
stop_workers
lat_q="FROM cairn_queue q JOIN cairn_steps s ON s.run_id = q.id ORDER BY q.submitted_at OFFSET 1"
claim_ms=$(sql "SELECT EXTRACT(EPOCH FROM (q.claimed_at - q.submitted_at)) * 1000 $lat_q" | pct)
start_ms=$(sql "SELECT EXTRACT(EPOCH FROM (s.started_at - q.submitted_at)) * 1000 $lat_q" | pct)
inner_ms=$(sql "SELECT EXTRACT(EPOCH FROM (s.started_at - q.claimed_at)) * 1000 $lat_q" | pct)
fi
if [[ $PARTS == *a* ]]; then
echo
echo "### Claim-to-start latency: $SAMPLES one-step runs, one idle worker ($PROFILE build)"
echo
echo "| from submit to | p50, ms | p99, ms | max, ms |"
echo "|---|---|---|---|"
echo "| the claim (wake-up by NOTIFY, claim statement) | $claim_ms |"
echo "| the step's start (\`running\` checkpoint) | $start_ms |"
echo "| (claim to the step's start: the worker's own work) | $inner_ms |"
fi

# --- (b) throughput -------------------------------------------------------------------------
declare -A rate took
[[ $PARTS == *b* ]] || WORKER_COUNTS=""
for workers in $WORKER_COUNTS; do
    fresh
    echo "throughput: $RUNS runs, $workers worker(s)" >&2
    first=$("$CAIRN" submit one.yaml)
    sql "INSERT INTO cairn_queue (id, path, sets, inputs, labels, submitter, submitted_at, status)
         SELECT '01BENCH' || lpad(g::text, 19, '0'), path, sets, inputs, labels, submitter,
                submitted_at + g * interval '1 microsecond', 'queued'
         FROM cairn_queue, generate_series(1, $((RUNS - 1))) g WHERE id = '$first'" >/dev/null
    start_workers "$workers" --concurrency "$CONC"
    wait_done "$RUNS" 600
    stop_workers
    secs=$(sql "SELECT EXTRACT(EPOCH FROM (max(finished_at) - min(claimed_at))) FROM cairn_queue")
    failed=$(sql "SELECT count(*) FROM cairn_queue WHERE outcome <> 'succeeded'")
    ((failed == 0)) || { echo "$failed runs did not succeed" >&2; sql "SELECT outcome, count(*) FROM cairn_queue GROUP BY 1" >&2; exit 1; }
    took[$workers]=$secs
    rate[$workers]=$(python3 -c "print(f'{$RUNS / $secs:.0f}')")
done

if [[ $PARTS == *b* ]]; then
echo
echo "### Throughput: $RUNS queued one-step \`/bin/true\` runs ($PROFILE build, --concurrency $CONC each)"
echo
echo "| workers | drained in, s | runs/s | vs 1 worker |"
echo "|---|---|---|---|"
for workers in $WORKER_COUNTS; do
    printf '| %s | %.2f | %s | %s |\n' "$workers" "${took[$workers]}" "${rate[$workers]}" \
        "$(python3 -c "print(f'{${rate[$workers]} / ${rate[1]}:.2f}x')")"
done
fi

# --- (c) a routed step's overhead -------------------------------------------------------------
if [[ $PARTS == *c* ]]; then
fresh
echo "routed step: $SAMPLES runs routed and $SAMPLES local, interleaved" >&2
"$CAIRN" submit one.yaml >/dev/null # creates the tables
start_workers 1 --labels host=bench
wait_done 1 30
for ((i = 0; i < SAMPLES; i++)); do
    "$CAIRN" run one.yaml --log-format json >/dev/null 2>&1
    "$CAIRN" run routed.yaml --log-format json >/dev/null 2>&1
done
stop_workers
step_ms() {
    sql "SELECT EXTRACT(EPOCH FROM (s.finished_at - s.started_at)) * 1000 FROM cairn_steps s
         JOIN cairn_runs r ON r.id = s.run_id WHERE r.runbook = '$1' AND r.status = 'succeeded'" |
        python3 -c 'import statistics, sys; xs = [float(x) for x in sys.stdin.read().split()]; print(f"{statistics.median(xs):.2f} {len(xs)}")'
}
read -r local_ms local_n < <(step_ms bench-one)
read -r routed_ms routed_n < <(step_ms bench-routed)
fi

[[ $PARTS == *c* ]] || exit 0
echo
echo "### A routed step's overhead: one \`/bin/true\` step, $SAMPLES runs each ($PROFILE build)"
echo
echo "| step | median step time, ms | runs |"
echo "|---|---|---|"
echo "| local | $local_ms | $local_n |"
echo "| routed (\`runs_on\`, one idle worker) | $routed_ms | $routed_n |"
echo "| overhead | $(python3 -c "print(f'{$routed_ms - $local_ms:+.2f}')") | |"
