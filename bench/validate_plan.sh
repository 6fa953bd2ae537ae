#!/usr/bin/env bash
# Wall time (median of RUNS) and peak RSS of `cairn validate` and `cairn plan` on generated
# runbooks of 1,000 and 10,000 steps; prints a Markdown table. See docs/performance.md.
#
#   bench/validate_plan.sh            # RUNS=5 by default
set -euo pipefail

runs="${RUNS:-5}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --release -p cairn-cli >&2
cairn="$root/target/release/cairn"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# One measurement: "<wall us> <peak RSS KB> <user+sys s>". Wall time from the shell's clock
# (ns), since /usr/bin/time's %e has only two decimals. CPU time is shown too: on a shared
# machine it moves less than wall time.
measure() {
    local start end
    start=$(date +%s%N)
    if ! /usr/bin/time -o "$work/time" -f '%M %U %S' "$@" > /dev/null 2> "$work/stderr"; then
        cat "$work/stderr" "$work/time" >&2
        return 1
    fi
    end=$(date +%s%N)
    read -r rss user sys < "$work/time"
    echo "$(( (end - start) / 1000 )) $rss $(echo "$user + $sys" | bc)"
}

echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" >&2
echo
echo "| Steps | Command | Wall time, median (s) | CPU time, median (s) | Peak RSS (MB) |"
echo "|------:|---------|----------------------:|---------------------:|--------------:|"
for steps in 1000 10000; do
    file="$work/bench-$steps.yaml"
    python3 bench/gen_runbook.py "$steps" > "$file"
    for command in "validate" "plan" "plan --output json"; do
        # shellcheck disable=SC2086 # the command is split into its words on purpose
        for _ in $(seq "$runs"); do measure "$cairn" $command "$file"; done > "$work/samples"
        median_us=$(cut -d' ' -f1 "$work/samples" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
        peak_kb=$(cut -d' ' -f2 "$work/samples" | sort -n | tail -1)
        cpu=$(cut -d' ' -f3 "$work/samples" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
        printf '| %s | `cairn %s` | %d.%03d | %.2f | %d |\n' \
            "$(echo "$steps" | sed -E ':a;s/([0-9])([0-9]{3})($|,)/\1,\2\3/;ta')" "$command" \
            $(( median_us / 1000000 )) $(( median_us / 1000 % 1000 )) "$cpu" $(( (peak_kb + 512) / 1024 ))
    done
done
