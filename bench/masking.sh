#!/usr/bin/env bash
# Cost of building a run's masks (not a test): see docs/performance.md, "## Masking".
#
#   bench/masking.sh [SIZES...]      SIZES in bytes, default 4096 65536 1048000
#
# For each size, a secret file of that many random printable bytes (just under the 1 MiB cap
# for the largest) feeds a runbook with one `/bin/true` step and the memory state; the table
# gives the wall time and the peak RSS of `cairn run` (GNU time), against the same run with no
# secret. CAIRN=path/to/cairn picks the binary (default: a release build of this tree).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(4096 65536 1048000)
if [ -z "${CAIRN:-}" ]; then
  echo "building release..." >&2
  cargo build --quiet --release -p cairn-cli --manifest-path "$ROOT/Cargo.toml" >&2
  CAIRN=$ROOT/target/release/cairn
fi
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

measure() { # runbook -> "seconds max_rss_kib"
  /usr/bin/time -f '%e %M' -o "$DIR/time" "$CAIRN" run "$1" --state memory: >/dev/null 2>"$DIR/err" \
    || { cat "$DIR/err" >&2; exit 1; }
  cat "$DIR/time"
}

cat > "$DIR/none.yaml" <<YAML
cairn: 1
name: nosecret
steps:
  - id: t
    argv: [/bin/true]
YAML
printf '%-10s %10s %14s\n' size seconds peak_rss_MiB
read -r s m < <(measure "$DIR/none.yaml")
printf '%-10s %10s %14s\n' none "$s" "$((m / 1024))"
for n in "${SIZES[@]}"; do
  head -c $((n * 2)) /dev/urandom | tr -dc 'A-Za-z0-9!#%+,-./:;<=>?@^_~' | head -c "$n" > "$DIR/secret"
  cat > "$DIR/s$n.yaml" <<YAML
cairn: 1
name: secret$n
secrets:
  big: { file: "$DIR/secret" }
steps:
  - id: t
    argv: [/bin/true]
YAML
  read -r s m < <(measure "$DIR/s$n.yaml")
  printf '%-10s %10s %14s\n' "$n" "$s" "$((m / 1024))"
done
