#!/usr/bin/env bash
# Cairn's main job: the Memory System's disaster-recovery drill, end to end, from a clean clone.
#
# runbooks/drill/drill.yaml stands up a miniature Memory System that it owns (a throwaway
# PostgreSQL database named after the run on 127.0.0.1:5432, its own ChromaDB server, stand-ins
# for the three APIs), runs the health check, a backup, a simulated disaster, the disaster
# recovery plan (its approvals answered for the drill) and a verification that every row and
# every vector and the schema came back, removes everything it made, and ends with a verdict: the
# data lost by this recovery, the RTO, and the RPO judged from the backup schedule.
# Ports are chosen free here; state (the run history) goes to a temporary folder, kept.
set -euo pipefail
cd "$(dirname "$0")/.."

work="${CAIRN_DEMO_DIR:-$(mktemp -d /tmp/cairn-main-job.XXXXXX)}"
mkdir -p "$work"
if [ -n "${CAIRN_BIN:-}" ]; then
  cairn="$CAIRN_BIN"
else
  echo "==> building cairn (release)" >&2
  cargo build --release -q -p cairn-cli
  cairn="$PWD/target/release/cairn"
fi

echo "==> ChromaDB (cached virtualenv, installed on first use)" >&2
CAIRN_CHROMA_BIN="${CAIRN_CHROMA_BIN:-$(bash .ci/chroma-venv.sh)}"
export CAIRN_CHROMA_BIN
export CAIRN_STATE="$work/state.db"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

"$cairn" validate runbooks/
set +e
# stdout holds the run id alone; the live progress is on stderr.
run_id="$("$cairn" run runbooks/drill/drill.yaml --auto-approve \
  --set chroma_port="$(free_port)" --set internal_port="$(free_port)" \
  --set external_port="$(free_port)" --set mcp_port="$(free_port)" \
  --set report_dir="$work")"
code=$?
set -e
report="$(ls -t "$work"/cairn-drill-*.md 2>/dev/null | head -n 1 || true)"
if [ -n "$report" ]; then
  echo >&2
  cat "$report" >&2
fi
echo "==> run history and the drill report in $work" >&2
# The verdict, last: what the run itself recorded (its `verdict` output, RTO and RPO), or why
# there is none.
verdict="$(
  if [ -n "$run_id" ]; then "$cairn" show "$run_id" --output json 2>/dev/null || true; fi |
    python3 -c '
import json, subprocess, sys
code = int(sys.argv[1])
try:
    run = json.load(sys.stdin)["run"]
except Exception:
    run = {}
out = run.get("outputs") or {}
verdict = out.get("verdict")
verdict_line = ""
if run.get("id"):
    shown = subprocess.run([sys.argv[2], "show", run["id"], "--step", "verdict", "--output", "json"],
                           capture_output=True, text=True)
    try:
        verdict_line = (json.loads(shown.stdout)[-1].get("result") or {}).get("stdout", "").strip()
    except Exception:
        pass
if code == 0 and isinstance(verdict, str) and verdict.startswith("DRILL PASSED"):
    print(verdict)
elif verdict_line.startswith("DRILL FAILED:"):
    # The verdict step failed the run, having said why (the first failed step, RTO, RPO).
    print(verdict_line)
else:
    def measured(v, objective):
        return "not measured" if v is None else f"{v} s (objective {objective})"
    why = run.get("error") or verdict or "cairn exited %d" % code
    rto = measured(out.get("rto_s"), "4 h")
    rpo = "RPO " + ("not judged" if out.get("rpo_worst_h") is None else "%s h at worst by the backup schedule" % out["rpo_worst_h"]) + " (objective 6 h)"
    print("DRILL FAILED: %s; RTO %s; %s" % (why, rto, rpo))
' "$code" "$cairn"
)"
echo "==> $verdict" >&2
exit "$code"
