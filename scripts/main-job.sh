#!/usr/bin/env bash
# Cairn's main job on a fresh machine: real runbooks against real services.
#
# Starts a local ChromaDB (from a cached virtualenv, installed on first use), then runs
#   1. runbooks/demo-data.yaml  - the Memory System's tables and sample data in PostgreSQL
#                                 (127.0.0.1:5432, database `test`), mirrored as vectors in Chroma
#   2. runbooks/backup.yaml     - pg_dump + pg_restore --list, and a Chroma export to JSONL,
#                                 side by side, with every step checkpointed in SQLite
# and shows the run history. State and backups go to a temporary folder (kept, and printed).
set -euo pipefail
cd "$(dirname "$0")/.."

work="${CAIRN_DEMO_DIR:-$(mktemp -d /tmp/cairn-main-job.XXXXXX)}"
mkdir -p "$work"
echo "==> building cairn (release)" >&2
cargo build --release -q -p cairn-cli
cairn="$PWD/target/release/cairn"

echo "==> starting ChromaDB" >&2
chroma_bin="$(bash .ci/chroma-venv.sh)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ANONYMIZED_TELEMETRY=False "$chroma_bin" run --path "$work/chroma" --host 127.0.0.1 --port "$port" \
  > "$work/chroma.log" 2>&1 &
chroma_pid=$!
trap 'kill "$chroma_pid" 2>/dev/null || true' EXIT
export CHROMA_URL="http://127.0.0.1:$port"
export CAIRN_STATE="$work/state.db"

"$cairn" validate runbooks/
"$cairn" run runbooks/demo-data.yaml
"$cairn" run runbooks/backup.yaml --set backup_dir="$work/backups"
"$cairn" runs
echo "==> state, logs and backups in $work" >&2
ls -l "$work/backups" >&2
