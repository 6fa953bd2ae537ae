#!/usr/bin/env bash
# Peak RSS (and wall time) of `cairn validate` and `cairn plan` on generated runbooks of 10,000,
# 50,000 and 100,000 steps, from `/usr/bin/time -v`; prints a Markdown table. Memory must grow
# linearly with the step count (see docs/performance.md).
#
#   bench/validate_memory.sh                 # builds and measures the release binary
#   CAIRN=/path/to/cairn bench/validate_memory.sh   # measures that binary instead
#   SIZES="10000 50000" bench/validate_memory.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -z "${CAIRN:-}" ]]; then
    cargo build --release -p cairn-cli >&2
    CAIRN="${CARGO_TARGET_DIR:-$root/target}/release/cairn"
fi
sizes="${SIZES:-10000 50000 100000}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "| Steps | Command | Peak RSS (MB) | Wall time (s) |"
echo "|------:|---------|--------------:|--------------:|"
for steps in $sizes; do
    file="$work/bench-$steps.yaml"
    python3 bench/gen_runbook.py "$steps" > "$file"
    for command in validate plan; do
        if ! /usr/bin/time -v -o "$work/time" "$CAIRN" "$command" "$file" > /dev/null 2> "$work/stderr"; then
            cat "$work/stderr" "$work/time" >&2
            exit 1
        fi
        kb=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$work/time")
        wall=$(sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time")
        printf '| %s | `cairn %s` | %d | %s |\n' "$steps" "$command" $(( (kb + 512) / 1024 )) "$wall"
    done
done
