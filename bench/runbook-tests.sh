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
for r in $(seq 1 "$ROUNDS"); do
    start=$(date +%s.%N)
    "$CAIRN_BIN" test "$WORK" > "$WORK/out.txt" || { tail -20 "$WORK/out.txt"; exit 1; }
    end=$(date +%s.%N)
    t=$(echo "$end - $start" | bc)
    times+=("$t")
    echo "round $r: ${t} s" >&2
done
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$total" '
    { t[NR] = $1 }
    END { m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2;
          printf "cairn test: %d cases in %.2f s (median of %d; range %.2f-%.2f s), %.1f ms per case\n", n, m, NR, t[1], t[NR], m * 1000 / n }'
