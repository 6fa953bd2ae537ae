#!/usr/bin/env bash
# `cairn serve` benchmarks (not tests): see docs/performance.md, "## The web console".
#
#   bench/serve.sh [RUNS] [STEPS_PER_RUN]     defaults: 100000 runs, 20 steps each (2,000,000)
#
# Fills a store (SQLite, then PostgreSQL) with RUNS finished runs of 20 runbooks, STEPS_PER_RUN
# step records each, a few paused runs with a waiting gate, and one run of 1,000 steps with its
# DAG; starts `cairn serve` on it and times each page and API answer (200 sequential requests
# each: median and p95), the 100th page of the history by cursor, the run of 1,000 steps, and
# the server's peak RSS.
# Environment: CAIRN_BIN (default: a release build), CAIRN_BIN_BEFORE (another build, measured
# on the same filled stores first, its rows marked "before"), CAIRN_BENCH_PG (default
# postgres://postgres@127.0.0.1:5432/test; the state goes to a schema `cairn_bench_serve`,
# created and dropped here; without psql the PostgreSQL variant is skipped).
set -euo pipefail

RUNS=${1:-100000}
STEPS=${2:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG=${CAIRN_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=cairn_bench_serve
export PGOPTIONS="--client-min-messages=warning"
if [ -z "${CAIRN_BIN:-}" ]; then
  cargo build --release -q -p cairn-cli --manifest-path "$ROOT/Cargo.toml"
  CAIRN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"
fi
WORK=$(mktemp -d)
SERVER=""
# The server is stopped whatever happens (a failed measurement must not leave it running).
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"' EXIT
printf 'cairn: 1\nname: seed\nsteps:\n  - id: a\n    argv: [/bin/true]\n' > "$WORK/seed.yaml"

# The rows, as SQL both databases run: $T(i) is the start time of run i (one a minute).
fill_sql() {  # $1 = sqlite|pg
  local series ts
  if [ "$1" = sqlite ]; then
    series="WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $RUNS) SELECT i FROM n"
    ts() { echo "strftime('%Y-%m-%dT%H:%M:%S', 1700000000 + $1, 'unixepoch') || '.000000Z'"; }
    idx="printf('01BENCH%019d', i)"
    steps_series="WITH RECURSIVE s(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM s WHERE k < $STEPS) SELECT k FROM s"
    big_series="WITH RECURSIVE s(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM s WHERE k < 1000) SELECT k FROM s"
    json() { echo "'$1'"; }
    cat_="||"
  else
    series="SELECT i FROM generate_series(1, $RUNS) AS i"
    ts() { echo "to_timestamp(1700000000 + $1)"; }
    idx="'01BENCH' || lpad(i::text, 19, '0')"
    steps_series="SELECT k FROM generate_series(1, $STEPS) AS k"
    big_series="SELECT k FROM generate_series(1, 1000) AS k"
    json() { echo "'$1'::jsonb"; }
  fi
  cat <<SQL
INSERT INTO cairn_runs (id, runbook, path, content_hash, inputs, status, started_at, finished_at,
  heartbeat_at, host, pid, username, parent_run, outputs, error, attempt, claimed_at, parent_step, pid_start)
SELECT $idx, 'runbook-' || (i % 20), '/srv/runbooks/r.yaml', 'sha256:x', $(json '{"db":"prod"}'),
  CASE WHEN i % 500 = 0 THEN 'paused' WHEN i % 10 = 0 THEN 'failed' WHEN i % 97 = 0 THEN 'interrupted' ELSE 'succeeded' END,
  $(ts "i * 60"), $(ts "i * 60 + 30"), $(ts "i * 60 + 30"), 'bench', 1, 'sre', NULL, NULL, NULL, 1, $(ts "i * 60"), NULL, 0
FROM ($series) AS runs;
INSERT INTO cairn_steps (run_id, step_id, item, status, attempt, started_at, finished_at, result,
  outputs, error, log_path, def_hash, idempotent)
SELECT $idx, 'step_' || k, -1,
  CASE WHEN k = $STEPS AND i % 500 = 0 THEN 'waiting' ELSE 'succeeded' END, 1,
  $(ts "i * 60 + k"), $(ts "i * 60 + k"), $(json '{"exit_code":0}'), $(json '{"rows":"42"}'), NULL, NULL, 'h',
  $( [ "$1" = sqlite ] && echo 1 || echo true )
FROM ($series) AS runs CROSS JOIN ($steps_series) AS steps;
INSERT INTO cairn_runs (id, runbook, path, content_hash, inputs, status, started_at, finished_at,
  heartbeat_at, host, pid, username, parent_run, outputs, error, attempt, claimed_at, parent_step, pid_start)
VALUES ('01BIGRUN000000000000000000', 'big', '/srv/runbooks/big.yaml', 'sha256:x', $(json '{}'), 'failed',
  $(ts 0), $(ts 60), $(ts 60), 'bench', 1, 'sre', NULL, NULL, 'step_1000 failed', 1, $(ts 0), NULL, 0);
INSERT INTO cairn_step_defs (run_id, pos, step_id, def_hash, needs)
SELECT '01BIGRUN000000000000000000', k - 1, 'step_' || k, 'h',
  CASE WHEN k = 1 THEN $(json '[]') ELSE $( [ "$1" = sqlite ] && echo "'[\"step_' || ((k - 1) / 2 + 1) || '\"]'" || echo "jsonb_build_array('step_' || ((k - 1) / 2 + 1))" ) END
FROM ($big_series) AS s;
INSERT INTO cairn_steps (run_id, step_id, item, status, attempt, started_at, finished_at, result,
  outputs, error, log_path, def_hash, idempotent)
SELECT '01BIGRUN000000000000000000', 'step_' || k, -1, CASE WHEN k = 1000 THEN 'failed' ELSE 'succeeded' END, 1,
  $(ts k), $(ts k), $(json '{"exit_code":0}'), $(json '{"n":"1"}'), NULL, NULL, 'h',
  $( [ "$1" = sqlite ] && echo 1 || echo true )
FROM ($big_series) AS s;
SQL
}

measure() {  # $1 = label, $2 = state URL, $3 = the cairn binary (default: CAIRN_BIN)
  local out url pid
  out="$WORK/serve.out"
  "${3:-$CAIRN_BIN}" serve --state "$2" --listen 127.0.0.1:0 > "$out" 2> "$WORK/serve.err" &
  pid=$!
  SERVER=$pid
  for _ in $(seq 1 100); do [ -s "$out" ] && break; sleep 0.1; done
  url=$(head -1 "$out")
  python3 - "$1" "${url%/}" "$pid" <<'PY'
import json, statistics, sys, time, urllib.parse, urllib.request
label, base, pid = sys.argv[1], sys.argv[2], sys.argv[3]
def get(path):
    t = time.perf_counter()
    with urllib.request.urlopen(base + path) as r:
        body = r.read()
    return time.perf_counter() - t, body
def bench(name, path, n=200):
    get(path)
    times = sorted(get(path)[0] for _ in range(n))
    p50 = statistics.median(times) * 1000
    p95 = times[int(len(times) * 0.95) - 1] * 1000
    print(f"| {label} | {name} | {p50:.1f} | {p95:.1f} |")
after, pages = None, 1
while pages < 100:
    page = json.loads(get("/api/runs" + (f"?after={after}" if after else ""))[1])
    if not page["next"]:
        break
    after, pages = urllib.parse.quote(page["next"]), pages + 1
bench("`GET /api/runs` (newest 50)", "/api/runs")
bench("`GET /runs` (the page)", "/runs")
bench("`GET /api/runs?status=failed`", "/api/runs?status=failed")
bench("`GET /api/runs?runbook=runbook-7`", "/api/runs?runbook=runbook-7")
bench(f"`GET /api/runs?after=…` (page {pages})", f"/api/runs?after={after}")
bench("`GET /api/approvals` (200 gates)", "/api/approvals", 50)
bench("`GET /api/runs/RUN` (1,000 steps)", "/api/runs/01BIGRUN000000000000000000")
bench("`GET /runs/RUN` (1,000 steps, the page)", "/runs/01BIGRUN000000000000000000")
bench("`GET /runs/RUN/dag.svg` (1,000 steps)", "/runs/01BIGRUN000000000000000000/dag.svg")
with open(f"/proc/{pid}/status") as f:
    hwm = [l for l in f if l.startswith("VmHWM")][0].split()[1]
print(f"| {label} | server peak RSS | {int(hwm) // 1024} MB | |")
PY
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  SERVER=""
}

echo "| store | request | median (ms) | p95 (ms) |"
echo "|---|---|---:|---:|"
# SQLite: the store created by a real run, then filled.
"$CAIRN_BIN" run "$WORK/seed.yaml" --state "sqlite://$WORK/state.db" > /dev/null 2>&1
fill_sql sqlite | sqlite3 "$WORK/state.db"
sqlite3 "$WORK/state.db" "ANALYZE;"
[ -n "${CAIRN_BIN_BEFORE:-}" ] && measure "SQLite (before)" "sqlite://$WORK/state.db" "$CAIRN_BIN_BEFORE"
measure SQLite "sqlite://$WORK/state.db"

if command -v psql > /dev/null; then
  psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA"
  PG_STATE="$PG?options=-csearch_path%3D$SCHEMA"
  "$CAIRN_BIN" run "$WORK/seed.yaml" --state "$PG_STATE" > /dev/null 2>&1
  fill_sql pg | PGOPTIONS="$PGOPTIONS -csearch_path=$SCHEMA" psql -q "$PG"
  PGOPTIONS="$PGOPTIONS -csearch_path=$SCHEMA" psql -q "$PG" -c "ANALYZE"
  [ -n "${CAIRN_BIN_BEFORE:-}" ] && measure "PostgreSQL (before)" "$PG_STATE" "$CAIRN_BIN_BEFORE"
  measure PostgreSQL "$PG_STATE"
  psql -q "$PG" -c "DROP SCHEMA $SCHEMA CASCADE"
fi
