#!/usr/bin/env bash
# Per-step cost of `cairn run` against the shell and other runners (not tests): see
# docs/performance.md, "## Per-step cost".
#
#   bench/steps.sh [ROUNDS]          ROUNDS defaults to 5; BIG_ROUNDS (default 3) for 10,000 steps
#
# Every round runs one of each variant, in the same order, so that the noise of a shared machine
# spreads over all of them; the report gives medians of the rounds and ratios of medians.
#  (a) 300 and 1,000 sequential `argv: [/bin/true]` steps: SQLite state (default), memory state,
#      PostgreSQL state; against bash running /bin/true as many times; `just` and `doit` on the
#      same 300 commands when installed. With CAIRN_ALT=/path/to/another/cairn, that binary runs
#      every cairn variant too, in the same rounds (to compare two builds side by side).
#  (b) per-step cost at 10,000 steps over that at 1,000 (SQLite and memory), and peak RSS.
#  (c) 200 independent `sleep 0.2` steps at --concurrency 50, against xargs -P 50.
#  (d) the start-up of a one-step run (memory state, a new SQLite file, an existing one), 20 runs
#      per round.
#  (e) the price of an exec wrapper for a death signal: `setpriv --pdeathsig KILL /bin/true`
#      against `/bin/true`, 300 times from bash.
# Environment: CAIRN_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test), used with
# `sslmode=disable` in a schema `cairn_bench_steps_PID` created and dropped here (one per
# invocation, so that two benches on one server do not drop each other's tables).
# STORES (default "sqlite memory postgres") limits the state kinds measured: on a machine whose
# disk is shared with other work, `STORES=memory` measures the engine's own path alone.
set -euo pipefail

ROUNDS=${1:-5}
BIG_ROUNDS=${BIG_ROUNDS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG=${CAIRN_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=cairn_bench_steps_$$
STORES=${STORES:-sqlite memory postgres}
has() { [[ " $STORES " == *" $1 "* ]]; }

# CAIRN_BIN: an already built binary (skips the build).
CAIRN=${CAIRN_BIN:-}
if [[ -z $CAIRN ]]; then
    echo "building release..." >&2
    cargo build --quiet --release -p cairn-cli --manifest-path "$ROOT/Cargo.toml" >&2
    CAIRN=$ROOT/target/release/cairn
fi
ALT=${CAIRN_ALT:-}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-steps.XXXXXX")
HAVE_PSQL=
cleanup() {
    if [[ -n $HAVE_PSQL ]]; then psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

for n in 1 300 1000 10000; do
    python3 "$ROOT/bench/gen_runbook.py" "$n" --kind true >"true-$n.yaml"
done
python3 "$ROOT/bench/gen_runbook.py" 200 --kind sleep >sleep-200.yaml

# just: one recipe per command, each depending on the one before (just runs them in order).
HAVE_JUST=
if command -v just >/dev/null; then
    HAVE_JUST=1
    python3 - >justfile <<'PY'
print("all: s299\n")
for i in range(300):
    deps = f" s{i - 1}" if i else ""
    print(f"s{i}:{deps}\n    /bin/true\n")
PY
fi
# doit: one task per command, each with the one before as task_dep; its own state file.
HAVE_DOIT=
if command -v doit >/dev/null; then
    HAVE_DOIT=1
    cat >dodo.py <<'PY'
DOIT_CONFIG = {"verbosity": 0}
def task_s():
    for i in range(300):
        yield {"name": str(i), "actions": ["/bin/true"],
               "task_dep": [f"s:{i - 1}"] if i else [], "uptodate": [False]}
PY
fi

if has postgres && command -v psql >/dev/null &&
    psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null 2>&1; then
    HAVE_PSQL=1
fi
sep='?'
[[ $PG == *\?* ]] && sep='&'
PG_STATE="$PG${sep}sslmode=disable&options=-csearch_path%3D$SCHEMA"

# measure NAME CMD...: runs CMD (output discarded) under /usr/bin/time and appends
# "wall-seconds cpu-seconds peak-RSS-KB" to NAME.t
measure() {
    local name=$1
    shift
    rm -rf state.db state.db-* .cairn logs .doit.db*
    if ! /usr/bin/time -f "%e %U %S %M" -o "$name.one" "$@" >/dev/null 2>"$name.err"; then
        echo "FAILED: $*" >&2
        tail -5 "$name.err" >&2
        exit 1
    fi
    awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$name.one" >>"$name.t"
}

for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for n in 300 1000; do
        measure "a${n}_bash" bash -c "for _ in \$(seq $n); do /bin/true; done"
        if has sqlite; then measure "a${n}_sqlite" "$CAIRN" run "true-$n.yaml" --state "$WORK/state.db"; fi
        if has memory; then measure "a${n}_memory" "$CAIRN" run "true-$n.yaml" --state memory:; fi
        if [[ -n $HAVE_PSQL ]]; then
            measure "a${n}_postgres" "$CAIRN" run "true-$n.yaml" --state "$PG_STATE"
        fi
        if [[ -n $ALT ]]; then
            if has sqlite; then measure "a${n}_alt" "$ALT" run "true-$n.yaml" --state "$WORK/state.db"; fi
            if has memory; then measure "a${n}_altmemory" "$ALT" run "true-$n.yaml" --state memory:; fi
            if [[ -n $HAVE_PSQL ]]; then
                measure "a${n}_altpostgres" "$ALT" run "true-$n.yaml" --state "$PG_STATE"
            fi
        fi
    done
    if [[ -n $HAVE_JUST ]]; then measure a300_just just all; fi
    if [[ -n $HAVE_DOIT ]]; then measure a300_doit doit -n 1; fi
    measure c_xargs bash -c 'seq 200 | xargs -P 50 -I{} sleep 0.2'
    measure c_cairn "$CAIRN" run sleep-200.yaml --state memory: --concurrency 50
    measure d_memory bash -c "for _ in \$(seq 20); do '$CAIRN' run true-1.yaml --state memory: >/dev/null 2>&1; done"
    if has sqlite; then
        measure d_sqlite bash -c "for _ in \$(seq 20); do rm -f s1.db*; '$CAIRN' run true-1.yaml --state '$WORK/s1.db' >/dev/null 2>&1; done"
        "$CAIRN" run true-1.yaml --state "$WORK/s2.db" >/dev/null 2>&1
        measure d_sqlite_kept bash -c "for _ in \$(seq 20); do '$CAIRN' run true-1.yaml --state '$WORK/s2.db' >/dev/null 2>&1; done"
    fi
    if [[ -n $ALT ]]; then
        measure c_alt "$ALT" run sleep-200.yaml --state memory: --concurrency 50
        measure d_altmemory bash -c "for _ in \$(seq 20); do '$ALT' run true-1.yaml --state memory: >/dev/null 2>&1; done"
        if has sqlite; then
            measure d_altsqlite bash -c "for _ in \$(seq 20); do rm -f s1.db*; '$ALT' run true-1.yaml --state '$WORK/s1.db' >/dev/null 2>&1; done"
            measure d_altsqlite_kept bash -c "for _ in \$(seq 20); do '$ALT' run true-1.yaml --state '$WORK/s2.db' >/dev/null 2>&1; done"
        fi
    fi
    measure d_bash bash -c "for _ in \$(seq 20); do bash -c /bin/true; done"
    measure e_plain bash -c 'for _ in $(seq 300); do /bin/true; done'
    measure e_setpriv bash -c 'for _ in $(seq 300); do setpriv --pdeathsig KILL /bin/true; done'
done
for round in $(seq "$BIG_ROUNDS"); do
    echo "10,000 steps: $round/$BIG_ROUNDS" >&2
    if has sqlite; then
        measure b1k_sqlite "$CAIRN" run true-1000.yaml --state "$WORK/state.db"
        measure b10k_sqlite "$CAIRN" run true-10000.yaml --state "$WORK/state.db"
    fi
    if has memory; then
        measure b1k_memory "$CAIRN" run true-1000.yaml --state memory:
        measure b10k_memory "$CAIRN" run true-10000.yaml --state memory:
    fi
    if [[ -n $ALT ]] && has sqlite; then
        measure b1k_altsqlite "$ALT" run true-1000.yaml --state "$WORK/state.db"
        measure b10k_altsqlite "$ALT" run true-10000.yaml --state "$WORK/state.db"
    fi
    if [[ -n $ALT ]] && has memory; then
        measure b1k_altmemory "$ALT" run true-1000.yaml --state memory:
        measure b10k_altmemory "$ALT" run true-10000.yaml --state memory:
    fi
done

python3 - "$ROUNDS" "$BIG_ROUNDS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import os, statistics as st, sys
rounds, big_rounds, cpus, load = sys.argv[1:5]
def col(name, i):
    if not os.path.exists(name + ".t"):
        return None
    return [float(l.split()[i]) for l in open(name + ".t") if l.strip()]
def med(name, i=0):
    c = col(name, i)
    return st.median(c) if c else None
def row(label, name, base=None, per=None):
    w = col(name, 0)
    if not w:
        print(f"| {label} | not run | | | |")
        return
    m, cpu = st.median(w), med(name, 1)
    ratio = "baseline" if base is None else f"**{m / med(base):.2f}x**"
    extra = f" ({m / per * 1000:.2f} ms/step)" if per else ""
    print(f"| {label} | {m:.3f} s{extra} | {min(w):.3f} – {max(w):.3f} s | {cpu:.2f} s | {ratio} |")
print(f"{cpus} CPUs, load average at the end {load}. Wall: median of {rounds} interleaved rounds "
      f"({big_rounds} for 10,000 steps), range beside it. CPU: median user+sys. "
      "Ratio: median wall / median wall of the baseline.\n")
print("| benchmark | wall (median) | range | CPU | ratio |")
print("|---|---|---|---|---|")
for n in (300, 1000):
    row(f"(a) bash, `/bin/true` × {n}", f"a{n}_bash", per=n)
    row(f"(a) cairn, {n} × `argv: [/bin/true]`, SQLite", f"a{n}_sqlite", f"a{n}_bash", per=n)
    row(f"(a) cairn, same, memory", f"a{n}_memory", f"a{n}_bash", per=n)
    row(f"(a) cairn, same, PostgreSQL", f"a{n}_postgres", f"a{n}_bash", per=n)
    if col(f"a{n}_alt", 0):
        row(f"(a) CAIRN_ALT, same, SQLite", f"a{n}_alt", f"a{n}_bash", per=n)
    if col(f"a{n}_altmemory", 0):
        row(f"(a) CAIRN_ALT, same, memory", f"a{n}_altmemory", f"a{n}_bash", per=n)
    if col(f"a{n}_altpostgres", 0):
        row(f"(a) CAIRN_ALT, same, PostgreSQL", f"a{n}_altpostgres", f"a{n}_bash", per=n)
row("(a) just, 300 recipes of `/bin/true`", "a300_just", "a300_bash", per=300)
row("(a) doit, 300 tasks of `/bin/true`", "a300_doit", "a300_bash", per=300)
for kind in ("sqlite", "memory", "altsqlite", "altmemory"):
    if not col(f"b1k_{kind}", 0):
        continue
    row(f"(b) cairn, 1,000 steps, {kind}", f"b1k_{kind}", per=1000)
    row(f"(b) cairn, 10,000 steps, {kind}", f"b10k_{kind}", per=10000)
    a, b = med(f"b1k_{kind}"), med(f"b10k_{kind}")
    rss = col(f"b10k_{kind}", 2)
    if a and b and rss:
        print(f"| (b) {kind}: per step at 10,000 / per step at 1,000 | **{b / 10 / a:.2f}** | | | "
              f"peak RSS at 10,000: **{st.median(rss) / 1024:.0f} MiB** |")
row("(c) `seq 200 \\| xargs -P 50 -I{} sleep 0.2`", "c_xargs")
row("(c) cairn, 200 × `sleep 0.2`, `--concurrency 50`", "c_cairn", "c_xargs")
if col("c_alt", 0):
    row("(c) CAIRN_ALT, same", "c_alt", "c_xargs")
row("(d) `bash -c /bin/true`, 20 times", "d_bash", per=20)
row("(d) cairn, one-step run, memory, 20 times", "d_memory", "d_bash", per=20)
row("(d) cairn, one-step run, new SQLite file, 20 times", "d_sqlite", "d_bash", per=20)
row("(d) cairn, one-step run, existing SQLite file, 20 times", "d_sqlite_kept", "d_bash", per=20)
if col("d_altmemory", 0):
    row("(d) CAIRN_ALT, one-step run, memory, 20 times", "d_altmemory", "d_bash", per=20)
if col("d_altsqlite", 0):
    row("(d) CAIRN_ALT, one-step run, new SQLite file, 20 times", "d_altsqlite", "d_bash", per=20)
if col("d_altsqlite_kept", 0):
    row("(d) CAIRN_ALT, one-step run, existing SQLite file, 20 times", "d_altsqlite_kept", "d_bash", per=20)
row("(e) `/bin/true` × 300 from bash", "e_plain", per=300)
row("(e) `setpriv --pdeathsig KILL /bin/true` × 300", "e_setpriv", "e_plain", per=300)
PY
