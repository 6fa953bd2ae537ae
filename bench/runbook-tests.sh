#!/usr/bin/env bash
# Benchmark of `cairn test` (not a test): see docs/performance.md, "## Runbook tests".
#
#   bench/runbook-tests.sh [CASES] [ROUNDS]     CASES defaults to 500, ROUNDS to 5
#
# Copies the shipped runbooks' test files (runbooks/**/*.test.yaml) into a temp folder, each copy
# pointing at the shipped runbook, until there are at least CASES cases, then times
# `cairn test` over them ROUNDS times: every case a whole run of the engine on a memory store,
# its fixtures behind the engine's ports. Prints the median wall time with the range.
# CAIRN_BIN: the binary to time (default: a release build, built here).
set -euo pipefail

CASES=${1:-500}
ROUNDS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${CAIRN_BIN:-}" ]; then
    echo "building release..." >&2
    cargo build --quiet --release -p cairn-cli --manifest-path "$ROOT/Cargo.toml" >&2
    CAIRN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

mapfile -t files < <(find "$ROOT/runbooks" -name '*.test.yaml' | sort)
per_round=0
for f in "${files[@]}"; do
    per_round=$((per_round + $(grep -c '^  - name:' "$f")))
done
copies=$(( (CASES + per_round - 1) / per_round ))
for i in $(seq 1 "$copies"); do
    for f in "${files[@]}"; do
        dir=$(dirname "$f")
        out="$WORK/$i/${f#"$ROOT"/runbooks/}"
        mkdir -p "$(dirname "$out")"
        runbook=$(sed -n 's/^runbook: //p' "$f")
        sed "s|^runbook: .*|runbook: $dir/$runbook|" "$f" > "$out"
    done
done
total=$((copies * per_round))
echo "$total cases ($copies copies of ${#files[@]} test files, $per_round cases each round)" >&2

times=()
cpus=()
for r in $(seq 1 "$ROUNDS"); do
    /usr/bin/time -f "%e %U %S" -o "$WORK/time.txt" "$CAIRN_BIN" test "$WORK" > "$WORK/out.txt" \
        || { tail -20 "$WORK/out.txt"; exit 1; }
    read -r wall user sys < "$WORK/time.txt"
    times+=("$wall")
    cpus+=("$(echo "$user + $sys" | bc)")
    echo "round $r: $wall s wall, $user s user, $sys s sys" >&2
done
median() { sort -n | awk '{ t[NR] = $1 } END { printf "%.2f %.2f %.2f\n", (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2, t[1], t[NR] }'; }
read -r wall lo hi < <(printf '%s\n' "${times[@]}" | median)
read -r cpu _ _ < <(printf '%s\n' "${cpus[@]}" | median)
echo "cairn test: $total cases in $wall s wall (median of $ROUNDS; range $lo-$hi s), $cpu s CPU (user + sys, median)"
