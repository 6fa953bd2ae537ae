#!/usr/bin/env bash
# The step path measured from outside with hyperfine (not a test): see docs/performance.md,
# "## The step path: signals and SQLite's thread".
#
#   bench/step-path.sh [ROUNDS] [RUNS]     ROUNDS defaults to 5, RUNS (hyperfine runs per round) to 5
#
# 300 sequential `argv: [/bin/true]` steps, side by side: a bash loop running /bin/true 300
# times, cairn with `--state memory:`, with a SQLite file (removed before every run, as a new
# run's would be), and with PostgreSQL (`sslmode=disable`, a schema of its own). Each round is
# one hyperfine invocation over every variant; on a shared machine the rounds spread the noise,
# and the report gives, per variant, the median over rounds of (variant mean / bash mean in the
# same round): ratios, not absolute times, are what compares across a busy machine. The CPU
# column (user + system of the whole process tree, hyperfine's) is less disturbed by other load.
# CAIRN_BIN: an already built binary (otherwise the release build of this tree). CAIRN_ALT:
# another cairn binary (an earlier build) measured in the same rounds, for before/after.
# STORES (default "memory sqlite postgres") limits the states measured.
# CAIRN_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail

ROUNDS=${1:-5}
RUNS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG=${CAIRN_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=cairn_bench_path_$$
STORES=${STORES:-memory sqlite postgres}
has() { [[ " $STORES " == *" $1 "* ]]; }

command -v hyperfine >/dev/null || {
    echo "hyperfine is needed (apt install hyperfine, or cargo install hyperfine)" >&2
    exit 2
}
CAIRN=${CAIRN_BIN:-}
if [[ -z $CAIRN ]]; then
    echo "building release..." >&2
    cargo build --quiet --release -p cairn-cli --manifest-path "$ROOT/Cargo.toml" >&2
    CAIRN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn
fi
ALT=${CAIRN_ALT:-}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-path.XXXXXX")
HAVE_PSQL=
cleanup() {
    if [[ -n $HAVE_PSQL ]]; then psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
python3 "$ROOT/bench/gen_runbook.py" 300 --kind true >true-300.yaml

if has postgres && command -v psql >/dev/null &&
    psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null 2>&1; then
    HAVE_PSQL=1
elif has postgres; then
    echo "no PostgreSQL at $PG (or no psql): its variant is skipped" >&2
fi
sep='?'
[[ $PG == *\?* ]] && sep='&'
PG_STATE="$PG${sep}sslmode=disable&options=-csearch_path%3D$SCHEMA"

# The variants: NAME<TAB>COMMAND. Every cairn variant once per binary (this one, then ALT).
variants() {
    printf 'bash\t%s\n' 'bash -c "for _ in \$(seq 300); do /bin/true; done"'
    local tag bin
    for tag in new alt; do
        bin=$CAIRN
        if [[ $tag == alt ]]; then
            [[ -n $ALT ]] || continue
            bin=$ALT
        fi
        if has memory; then printf '%s\t%s\n' "memory-$tag" "$bin run true-300.yaml --state memory:"; fi
        if has sqlite; then printf '%s\t%s\n' "sqlite-$tag" "$bin run true-300.yaml --state $WORK/state.db"; fi
        if [[ -n $HAVE_PSQL ]]; then printf '%s\t%s\n' "postgres-$tag" "$bin run true-300.yaml --state '$PG_STATE'"; fi
    done
}

# Every command must succeed before it is timed.
while IFS=$'\t' read -r name cmd; do
    rm -rf state.db state.db-* .cairn
    bash -c "$cmd" >/dev/null 2>"$name.err" || {
        echo "FAILED: $cmd" >&2
        tail -5 "$name.err" >&2
        exit 1
    }
done < <(variants)

for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    args=()
    while IFS=$'\t' read -r name cmd; do
        args+=(--command-name "$name" "$cmd")
    done < <(variants)
    hyperfine --style none --warmup 1 --runs "$RUNS" \
        --prepare 'rm -rf state.db state.db-* .cairn' \
        --export-json "round-$round.json" "${args[@]}" >/dev/null
done

python3 - "$ROUNDS" "$RUNS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$CAIRN" "$ALT" round-*.json <<'PY'
import json, statistics, sys
rounds, runs, cpus, load, new, alt = sys.argv[1:7]
per = {}
for path in sys.argv[7:]:
    res = {r["command"]: r for r in json.load(open(path))["results"]}
    base = res["bash"]["mean"]
    for name, r in res.items():
        cpu = r["user"] + r["system"]
        per.setdefault(name, []).append((r["mean"], r["mean"] / base, cpu))
print(f"{cpus} CPUs, load average at the end {load}; {rounds} rounds of hyperfine, "
      f"{runs} runs per variant per round (1 warm-up).")
print(f"new: {new}" + (f"; alt: {alt}" if alt else ""))
print()
print("| variant | ratio to bash (median of rounds) | ratio range | mean wall (median of rounds) | CPU user+sys (median of rounds) |")
print("|---|---|---|---|---|")
labels = {"bash": "bash, `/bin/true` × 300", "memory": "cairn, `--state memory:`",
          "sqlite": "cairn, SQLite file", "postgres": "cairn, PostgreSQL (`sslmode=disable`)"}
for name, vals in per.items():
    kind, _, tag = name.partition("-")
    label = labels[kind] + (f" ({tag})" if tag else "")
    ratios = [r for _, r, _ in vals]
    wall = statistics.median(m for m, _, _ in vals)
    cpu = statistics.median(c for _, _, c in vals)
    ratio = "baseline" if name == "bash" else f"**{statistics.median(ratios):.2f}x**"
    rng = "" if name == "bash" else f"{min(ratios):.2f} – {max(ratios):.2f}"
    print(f"| {label} | {ratio} | {rng} | {wall * 1000:.0f} ms | {cpu * 1000:.0f} ms |")
PY
