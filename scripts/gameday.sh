#!/usr/bin/env bash
# Game days: every procedure of the Memory System's manual run against its real fault.
#
#   CAIRN_BIN=target/debug/cairn bash scripts/gameday.sh [SCENARIO...]
#
# Each scenario is a runbook in runbooks/gameday/ (the list and what each proves are in
# runbooks/gameday/README.md). This script stands up what must outlive a step (a step's processes
# end with it): a ChromaDB server, the three API stand-ins and a memory-service stand-in, each
# driven by marker files in the system folder (the faults and the remedies create and remove
# them). It runs each scenario without --auto-approve, so a scenario's remedy gate pauses the
# run: it answers the waiting gates in the order the scenario lists ("no" by the run's starter,
# "yes" by another Unix user), then resumes with --auto-approve for the rest; the scenario's
# own steps assert the outcome. Needs PostgreSQL on 127.0.0.1:5432 (user postgres), root (a
# tmpfs mount, a second user) and ChromaDB (.ci/chroma-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cairn="$(realpath "${CAIRN_BIN:?set CAIRN_BIN to a built cairn}")"
chroma_bin="${CAIRN_CHROMA_BIN:-$(bash .ci/chroma-venv.sh)}"
export CAIRN_CHROMA_BIN="$chroma_bin"
work="$(mktemp -d /tmp/cairn-gameday.XXXXXX)"
chmod 0755 "$work"
sys="$work/system"
mkdir -p "$sys/state"
export CAIRN_STATE="$work/state.db"
colleague=cairn-gameday
pids=()
cleanup() {
  # The servers' loops stop their servers when they see state/stop.
  touch "$sys/state/stop"
  for _ in $(seq 50); do
    alive=0
    for p in "${pids[@]}"; do if kill -0 "$p" 2>/dev/null; then alive=1; fi; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  if [ -z "${CAIRN_GAMEDAY_KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- the miniature Memory System's servers ----
chroma_port=$(free_port); internal=$(free_port); external=$(free_port); mcp=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -keyout "$sys/key.pem" -out "$sys/cert.pem" 2>/dev/null
# ChromaDB, down while system/chroma.down exists.
( while [ ! -e "$sys/state/stop" ]; do
    if [ -e "$sys/chroma.down" ]; then sleep 0.2; continue; fi
    ANONYMIZED_TELEMETRY=False "$chroma_bin" run --path "$sys/chroma" --host 127.0.0.1 --port "$chroma_port" >>"$sys/chroma.log" 2>&1 &
    server=$!
    while kill -0 "$server" 2>/dev/null && [ ! -e "$sys/chroma.down" ] && [ ! -e "$sys/state/stop" ]; do sleep 0.2; done
    kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  done ) &
pids+=($!)
# The three APIs: 503 while system/state/memory-service.stopped exists.
python3 runbooks/drill/standins.py "$sys/state" "$sys/cert.pem" "$sys/key.pem" "$internal" "$external" "$mcp" >"$sys/standins.log" 2>&1 &
pids+=($!)
# The memory service: a process named memory-service-gameday-PID; while system/service.down exists
# it is not running; while system/service.crashloop exists it dies of "out of memory" within a
# second of each start and is started again.
service="memory-service-gameday-$$"
( while [ ! -e "$sys/state/stop" ]; do
    if [ -e "$sys/service.down" ]; then sleep 0.2; continue; fi
    if [ -e "$sys/service.crashloop" ]; then
      echo "$(date -u +%FT%TZ) $service started" >>"$sys/service.log"
      bash -c "exec -a $service sleep 0.7" || true
      echo "$(date -u +%FT%TZ) $service: out of memory: killed process (MemoryError)" >>"$sys/service.log"
      sleep 0.3
    else
      bash -c "exec -a $service sleep 3600" &
      s=$!
      echo "$(date -u +%FT%TZ) $service started (pid $s)" >>"$sys/service.log"
      while kill -0 "$s" 2>/dev/null && [ ! -e "$sys/service.crashloop" ] && [ ! -e "$sys/service.down" ] && [ ! -e "$sys/state/stop" ]; do sleep 0.2; done
      kill "$s" 2>/dev/null || true; wait "$s" 2>/dev/null || true
    fi
  done ) &
pids+=($!)
until curl -fsS "http://127.0.0.1:$chroma_port/api/v2/heartbeat" >/dev/null 2>&1; do sleep 0.3; done

# The inputs every scenario may take, in one file (each scenario declares only those it uses).
cat >"$work/system.yaml" <<YAML
system_dir: $sys
chroma_url: http://127.0.0.1:$chroma_port
internal_api: http://127.0.0.1:$internal
external_api: https://127.0.0.1:$external
mcp_api: http://127.0.0.1:$mcp
access_log: $sys/state/access.log
service_pattern: $service
work_dir: $work
drill_ports: [$(free_port), $(free_port), $(free_port), $(free_port)]
YAML

# A second Unix user answers "yes": the run's starter may not approve their own run.
id "$colleague" >/dev/null 2>&1 || useradd --system --no-create-home "$colleague"
chmod 0755 "$(dirname "$cairn")"

# The gate a paused run waits on, as "RUN STEP" (a sub-run's gate: the deepest run paused).
waiting_gate() {
  python3 - "$cairn" "$1" <<'PY'
import json, subprocess, sys
cairn, run = sys.argv[1], sys.argv[2]
def show(r):
    return json.loads(subprocess.run([cairn, "show", r, "--output", "json"], capture_output=True, text=True, check=True).stdout)
runs = json.loads(subprocess.run([cairn, "runs", "--status", "paused", "--limit", "1000", "--output", "json"],
                                 capture_output=True, text=True, check=True).stdout)
while True:
    steps = show(run)["steps"]
    gate = [s["step_id"] for s in steps if s.get("status") == "waiting"]
    child = [r for r in runs if r.get("parent_run") == run and r.get("status") == "paused"]
    if child:
        run = child[-1]["id"]
        continue
    if gate:
        print(run, gate[0])
        sys.exit(0)
    sys.exit("no waiting gate under run " + run)
PY
}

failed=0
# scenario NAME ANSWERS [ENV=VALUE | --set INPUT=VALUE]...: run it, answer its gates, resume, judge it.
scenario() {
  local name="$1" file="runbooks/gameday/$1.yaml" answers="$2"; shift 2
  local started=$SECONDS log="$work/$(basename "$file" .yaml).log" run code gate
  # The rest: NAME=VALUE for the environment, --set NAME=VALUE for the run.
  local -a envs=() flags=()
  while [ $# -gt 0 ]; do
    if [ "$1" = --set ]; then flags+=("$1" "$2"); shift 2; else envs+=("$1"); shift; fi
  done
  set -- "${envs[@]}"
  set +e
  run=$(env "$@" "$cairn" run "$file" --inputs "$work/system.yaml" --inputs-ignore-unknown "${flags[@]}" 2>>"$log")
  code=$?
  local -a list=($answers)
  local i auto
  for i in "${!list[@]}"; do
    [ "$code" = 3 ] || break
    if ! gate=$(waiting_gate "$run" 2>>"$log"); then code=99; break; fi
    # shellcheck disable=SC2086
    if [ "${list[$i]}" = no ]; then
      "$cairn" reject $gate --comment "game day: no" >>"$log" 2>&1
    else
      runuser -u "$colleague" -- env CAIRN_STATE="$CAIRN_STATE" "$cairn" approve $gate --comment "game day: yes" >>"$log" 2>&1
    fi
    # After the last listed answer, the gates that follow are approved as they come.
    auto=(); if [ "$i" = $((${#list[@]} - 1)) ]; then auto=(--auto-approve); fi
    env "$@" "$cairn" resume "$run" "${auto[@]}" >>"$log" 2>&1
    code=$?
  done
  if [ "$code" = 3 ]; then env "$@" "$cairn" resume "$run" --auto-approve >>"$log" 2>&1; code=$?; fi
  set -e
  if [ -n "${fails_at:-}" ] && [ "$code" = 1 ]; then
    # A scenario whose "no" fails the run (on_reject: fail): it must have failed at that step
    # alone, every other step (its `finally` assertions too) succeeded or skipped.
    if "$cairn" show "$run" --output json | python3 -c '
import json, sys
steps = json.load(sys.stdin)["steps"]
bad = [s["step_id"] for s in steps if s["status"] not in ("succeeded", "skipped") and s["step_id"] != sys.argv[1]]
ok = any(s["step_id"] == sys.argv[1] and s["status"] == "failed" for s in steps)
sys.exit(0 if ok and not bad else "failed steps: %s" % bad)' "$fails_at" 2>>"$log"; then code=0; fi
  fi
  if [ "$code" = 0 ]; then
    echo "PASS: $name ($((SECONDS - started)) s, run $run)" >&2
  else
    echo "FAIL: $name (exit $code, run $run)" >&2; tail -n 30 "$log" >&2; failed=1
  fi
}
chmod 0777 "$work"; touch "$CAIRN_STATE"; chmod 0666 "$CAIRN_STATE"

all=(connections-exhausted slow-query chroma-down service-crash-loop api-5xx-declined api-5xx collection-missing backup-under-writes restore-loses-schema disk-full maintenance-under-writes chroma-settings-drift api-slow service-down logs-past-rotation rate-limit-off baseline-drift service-started-by-hand)
for s in "${@:-${all[@]}}"; do
  case "$s" in
    connections-exhausted) scenario "$s" no DB_USER="gd_app_$$" DB_ADMIN_USER=postgres ;;
    api-5xx-declined) fails_at=declined scenario "$s" "yes no" ;;
    collection-missing) scenario "$s" "no no" ;;
    # The restart's gate, then the scenario's own pause: the run's second process ends there.
    service-started-by-hand) scenario "$s" "yes yes" ;;
    # The pattern on Cairn's own command line: the diagnosis must not take Cairn for the service.
    service-down) scenario "$s" no --set "service_pattern=$service" ;;
    connections-exhausted | slow-query | chroma-down | service-crash-loop | maintenance-under-writes | chroma-settings-drift | logs-past-rotation) scenario "$s" no ;;
    *) scenario "$s" "" ;;
  esac
done
exit "$failed"
