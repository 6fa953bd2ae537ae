#!/usr/bin/env bash
# Durable-state benchmarks (not tests): see docs/performance.md, "## Durable state".
#
#   bench/state.sh [ROUNDS] [BIG]      ROUNDS defaults to 5; BIG (steps of the resume run) to 10000
#
# (a) checkpoint cost: 500 sequential `argv: [/bin/true]` steps with the memory state, SQLite
#     (sync=normal, the default), SQLite `?sync=full` and PostgreSQL. Each step commits two
#     checkpoints (`running`, then `succeeded`), so (store - memory) / 500 is what durability
#     costs per step;
# (b) resume: a BIG-step run (BIG-1 `/bin/true` steps, then one that fails until a flag file
#     exists) is resumed with the flag present: time from launching `cairn resume` to the last
#     step's `step_started` event (the aim: under 0.5 s), and to the end of the run;
# (c) size of that run's state: the SQLite file, its WAL (peak while running, and after), the
#     per-step logs beside it, and the PostgreSQL tables.
#
# Variants run interleaved (one of each per round) so that machine noise spreads evenly; tables
# give the median with the fastest and slowest beside it.
# Environment: CAIRN_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test); the PostgreSQL
# state goes to a schema `cairn_bench_state` of that database, created and dropped here (needs
# psql; without it the PostgreSQL variants are skipped).
set -euo pipefail

ROUNDS=${1:-5}
BIG=${2:-10000}
RESUMES=3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG=${CAIRN_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=cairn_bench_state
export PGOPTIONS="--client-min-messages=warning"
PG_STATE="$PG?options=-csearch_path%3D$SCHEMA"
# The same without TLS: with a server that offers TLS, the default sslmode=prefer makes every
# cairn process pay aws-lc's one-time entropy set-up (see docs/performance.md).
PG_PLAIN="$PG_STATE&sslmode=disable"

echo "building release..." >&2
cargo build --quiet --release -p cairn-cli --manifest-path "$ROOT/Cargo.toml" >&2
CAIRN=$ROOT/target/release/cairn

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-state.XXXXXX")
HAVE_PSQL=
cleanup() {
    if [[ -n $HAVE_PSQL ]]; then psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

if command -v psql >/dev/null && psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null 2>&1; then
    HAVE_PSQL=1
else
    echo "no PostgreSQL at $PG (or no psql): its variants are skipped" >&2
fi
pg_sql() { psql -qAt "$PG" -c "SET search_path TO $SCHEMA; $1"; }

# --- runbooks ---------------------------------------------------------------------------
python3 "$ROOT/bench/gen_runbook.py" 500 --kind true >true-500.yaml
python3 "$ROOT/bench/gen_runbook.py" $((BIG - 1)) --kind true >big.yaml
printf '  - id: last\n    shell: test -e %s\n' "$WORK/flag" >>big.yaml

# --- timing helpers -------------------------------------------------------------------------
cat >t.py <<'EOF'
"""time CMD...          -> seconds
   resume CMD...        -> seconds to the `last` step's step_started event, seconds to the end
   walpeak WAL CMD...   -> seconds, exit code, peak size of the WAL file (sampled every 20 ms)"""
import json, os, subprocess, sys, threading, time

mode, args = sys.argv[1], sys.argv[2:]
if mode == "time":
    t = time.monotonic()
    rc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    if rc != 0:
        sys.exit(f"{' '.join(args)}: exit {rc}")
    print(f"{time.monotonic() - t:.4f}")
elif mode == "resume":
    t = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    last = None
    for line in p.stdout:
        if last is None and '"step_started"' in line and json.loads(line).get("step") == "last":
            last = time.monotonic() - t
    rc = p.wait()
    if rc != 0 or last is None:
        sys.exit(f"resume: exit {rc}, last step started: {last}")
    print(f"{last:.4f} {time.monotonic() - t:.4f}")
elif mode == "walpeak":
    wal, cmd = args[0], args[1:]
    peak, done = 0, threading.Event()
    def sample():
        global peak
        while not done.is_set():
            try:
                peak = max(peak, os.path.getsize(wal))
            except OSError:
                pass
            time.sleep(0.02)
    threading.Thread(target=sample, daemon=True).start()
    t = time.monotonic()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    done.set()
    print(f"{time.monotonic() - t:.4f} {rc} {peak}")
EOF
# median (fastest-slowest) of the numbers on stdin, times $1 (default 1), printf format $2
stats() {
    python3 -c '
import statistics, sys
scale, fmt = float(sys.argv[1]), sys.argv[2]
xs = sorted(float(x) * scale for x in sys.stdin.read().split())
print(f"{fmt % statistics.median(xs)} ({fmt % xs[0]}-{fmt % xs[-1]})")' "${1:-1}" "${2:-%.2f}"
}

# --- (a) checkpoint cost per step -------------------------------------------------------------
variants=(memory sqlite sqlite_full)
[[ -n $HAVE_PSQL ]] && variants+=(postgres postgres_plain)
declare -A url=(
    [memory]=memory:
    [sqlite]="$WORK/a.db"
    [sqlite_full]="sqlite://$WORK/a-full.db?sync=full"
    [postgres]=$PG_STATE
    [postgres_plain]=$PG_PLAIN
)
for ((r = 1; r <= ROUNDS; r++)); do
    echo "checkpoint cost: round $r/$ROUNDS" >&2
    for v in "${variants[@]}"; do
        rm -rf "$WORK"/a.db* "$WORK"/a-full.db* logs .cairn
        python3 t.py time "$CAIRN" run true-500.yaml --state "${url[$v]}" --log-format json >>"a-$v.txt"
    done
done

# --- (b) resume of a BIG-step run, (c) its size --------------------------------------------------
big_stores=(sqlite)
[[ -n $HAVE_PSQL ]] && big_stores+=(postgres_plain postgres)
declare -A big_url=([sqlite]="$WORK/big.db" [postgres]=$PG_STATE [postgres_plain]=$PG_PLAIN)
declare -A big_run_s big_wal_peak
# A fresh schema, so that its size is the big run's alone.
[[ -n $HAVE_PSQL ]] && psql -q "$PG" -c "DROP SCHEMA $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null
for s in "${big_stores[@]}"; do
    if [[ $s == postgres ]]; then
        # The same PostgreSQL run as postgres_plain, resumed through TLS.
        big_run_s[$s]=${big_run_s[postgres_plain]}
    else
        echo "$BIG-step run on $s (its last step fails)..." >&2
        rm -f flag
        read -r secs rc peak < <(python3 t.py walpeak "$WORK/big.db-wal" "$CAIRN" run big.yaml --state "${big_url[$s]}" --log-format json)
        [[ $rc == 1 ]] || { echo "the $BIG-step run exited $rc, expected 1" >&2; exit 1; }
        big_run_s[$s]=$secs
        big_wal_peak[$s]=$peak
        run=$("$CAIRN" runs --state "${big_url[$s]}" --runbook "bench-true-$((BIG - 1))" --output json |
            python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
    fi
    if [[ $s == sqlite ]]; then
        sqlite_db=$(stat -c %s big.db)
        sqlite_wal=$(stat -c %s big.db-wal 2>/dev/null || echo 0)
        logs_kb=$(du -sk "logs/$run" | cut -f1)
        logs_files=$(find "logs/$run" -type f | wc -l)
        mkdir -p snapshot && cp big.db* snapshot/
    elif [[ -z ${pg_bytes:-} ]]; then
        pg_bytes=$(pg_sql "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$SCHEMA' AND c.relkind = 'r'")
    fi
    touch flag
    for ((r = 1; r <= RESUMES; r++)); do
        if [[ $s == sqlite ]]; then
            rm -f big.db*
            cp snapshot/* .
        else
            # Back to the state the failed run left: `last` failed, the run failed.
            pg_sql "UPDATE cairn_steps SET status = 'failed' WHERE run_id = '$run' AND step_id = 'last'; UPDATE cairn_runs SET status = 'failed' WHERE id = '$run'" >/dev/null
        fi
        python3 t.py resume "$CAIRN" resume "$run" --state "${big_url[$s]}" --log-format json >>"b-$s.txt"
    done
done

# --- report ---------------------------------------------------------------------------------
label() {
    case $1 in
    memory) echo "memory" ;;
    sqlite) echo "SQLite, sync=normal (default)" ;;
    sqlite_full) echo "SQLite, ?sync=full" ;;
    postgres) echo "PostgreSQL, local TCP, TLS (sslmode=prefer, the default)" ;;
    postgres_plain) echo "PostgreSQL, local TCP, sslmode=disable" ;;
    esac
}
mem_median=$(python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in open(sys.argv[1])))' a-memory.txt)
echo
echo "### Checkpoint cost: 500 sequential \`/bin/true\` steps, $ROUNDS rounds"
echo
echo "| state | run, s | per step, ms | checkpoints per step vs memory, ms |"
echo "|---|---|---|---|"
for v in "${variants[@]}"; do
    delta=$(python3 -c '
import statistics, sys
xs = [float(x) for x in open(sys.argv[1])]
print(f"{(statistics.median(xs) - float(sys.argv[2])) / 500 * 1000:+.2f}")' "a-$v.txt" "$mem_median")
    [[ $v == memory ]] && delta="-"
    echo "| $(label "$v") | $(stats 1 %.2f <"a-$v.txt") | $(stats 2 %.2f <"a-$v.txt") | $delta |"
done
echo
echo "### Resume of a $BIG-step run with $((BIG - 1)) steps done, $RESUMES resumes"
echo
echo "| state | first run, s | resume to the last step's start, s | whole resume, s |"
echo "|---|---|---|---|"
for s in "${big_stores[@]}"; do
    to_last=$(cut -d' ' -f1 "b-$s.txt" | stats 1 %.3f)
    whole=$(cut -d' ' -f2 "b-$s.txt" | stats 1 %.3f)
    echo "| $(label "$s") | ${big_run_s[$s]} | $to_last | $whole |"
done
echo
echo "### Size of the state of the $BIG-step run"
echo
mib() { python3 -c 'import sys; print(f"{int(sys.argv[1]) / 1048576:.1f} MiB")' "$1"; }
echo "| what | size |"
echo "|---|---|"
echo "| SQLite file after the run | $(mib "$sqlite_db") |"
echo "| SQLite WAL: peak during the run / after it | $(mib "${big_wal_peak[sqlite]}") / $(mib "$sqlite_wal") |"
[[ -n $HAVE_PSQL ]] && echo "| PostgreSQL tables (with indexes and TOAST) | $(mib "$pg_bytes") |"
echo "| step logs beside the SQLite file (one per shell/argv step) | $logs_files files, $((logs_kb / 1024)) MiB on disk |"
