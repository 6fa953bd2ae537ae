#!/usr/bin/env bash
# Game days: shipped troubleshooting runbooks run against their real faults, each asserted.
#
#   CAIRN_BIN=target/debug/cairn bash scripts/gameday.sh
#
# 1. connections exhausted by the application's role (a role limited to 3 connections, all held
#    idle): db-connection.yaml diagnoses as the administrative role and reaches its approval with
#    the role's connections as evidence; the remedy (a stand-in that ends the held sessions) fixes it.
# 2. ChromaDB down: chroma-issues.yaml reaches its approval quoting the failed heartbeat; the
#    remedy starts ChromaDB (a stand-in run by this script on the remedy's marker) and the runbook
#    sees it answer again.
# 3. the memory service not running, its pattern given with --set (so in Cairn's own command
#    line): service-crash.yaml says the service is not running and reaches its approval.
# The drill's faults (a restore losing schema, rows or content; a backup under writes; a recovery
# judged by its own outage) are proven by the tests in crates/cli/tests/run/drill.rs and
# memory_system.rs. Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and Chroma (.ci/chroma-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cairn="${CAIRN_BIN:?set CAIRN_BIN to a built cairn}"
chroma_bin="${CAIRN_CHROMA_BIN:-$(bash .ci/chroma-venv.sh)}"
work="$(mktemp -d /tmp/cairn-gameday.XXXXXX)"
export CAIRN_STATE="$work/state.db"
tag="gd_$$"
admin="postgres://postgres@127.0.0.1:5432/postgres"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $tag WITH (FORCE)" -c "DROP ROLE IF EXISTS ${tag}_app" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
failed=0
pass() { echo "PASS: $*" >&2; }
fail() { echo "FAIL: $*" >&2; failed=1; }
output() { "$cairn" show "$1" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["run"]["outputs"].get(sys.argv[1]))' "$2"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- 1. connections exhausted by the application's role ----
psql -X -q "$admin" -c "CREATE DATABASE $tag" -c "CREATE ROLE ${tag}_app LOGIN CONNECTION LIMIT 3"
app_url="postgres://${tag}_app@127.0.0.1:5432/$tag"
for _ in 1 2 3; do psql -X -q "$app_url" -c "SELECT pg_sleep(300)" >/dev/null 2>&1 & pids+=($!); done
sleep 1
if psql -X -q "$app_url" -c "SELECT 1" >/dev/null 2>&1; then fail "the fault: the application role can still connect"; fi
remedy="psql -X -q $admin -c \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${tag}_app'\""
set +e
run=$(DB_USER="${tag}_app" DB_ADMIN_USER=postgres DB_NAME="$tag" "$cairn" run runbooks/troubleshooting/db-connection.yaml \
  --auto-approve --set restart_command="$remedy" 2>"$work/db.log")
code=$?
set -e
if [ "$code" = 0 ] && [ "$(output "$run" app_connections)" = 3 ]; then
  pass "db-connection: diagnosed 3 connections of the exhausted role and reached its remedy"
else
  fail "db-connection: exit $code, app connections $(output "$run" app_connections 2>/dev/null)"; tail -n 20 "$work/db.log" >&2
fi
if psql -X -q "$app_url" -c "SELECT 1" >/dev/null 2>&1; then pass "db-connection: the remedy freed the role's connections"; else fail "db-connection: the role still cannot connect"; fi

# ---- 2. ChromaDB down ----
port=$(free_port)
marker="$work/chroma.restart"
( until [ -e "$marker" ]; do sleep 0.2; done
  exec env ANONYMIZED_TELEMETRY=False "$chroma_bin" run --path "$work/chroma" --host 127.0.0.1 --port "$port" >"$work/chroma.log" 2>&1 ) &
pids+=($!)
set +e
run=$("$cairn" run runbooks/troubleshooting/chroma-issues.yaml --auto-approve \
  --set chroma_url="http://127.0.0.1:$port" --set restart_command="touch $marker" 2>"$work/chroma-run.log")
code=$?
set -e
hb=$(output "$run" heartbeat_error)
if [ "$code" = 0 ] && [ -n "$hb" ] && [ "$hb" != None ] && [ -e "$marker" ]; then
  pass "chroma-issues: the failed heartbeat was evidence ($hb); the restart brought ChromaDB back"
else
  fail "chroma-issues: exit $code, heartbeat error '$hb'"; tail -n 20 "$work/chroma-run.log" >&2
fi

# ---- 3. the memory service not running ----
set +e
run=$("$cairn" run runbooks/troubleshooting/service-crash.yaml --auto-approve \
  --set process_pattern="gameday-memory-service-$$" --set log_command="echo out of memory: killed" \
  --set samples=2 --set interval_s=1 --set restart_command="touch $work/service.restarted" 2>"$work/crash.log")
code=$?
set -e
nr=$(output "$run" not_running)
if [ "$code" = 0 ] && [[ "$nr" == *"no process matches"* ]] && [ -e "$work/service.restarted" ]; then
  pass "service-crash: not running was evidence (Cairn's own command line not taken for the service); restarted"
else
  fail "service-crash: exit $code, '$nr'"; tail -n 20 "$work/crash.log" >&2
fi
exit "$failed"
