#!/usr/bin/env bash
# Execution benchmarks of `cairn run` (not tests): see docs/performance.md, "## Execution".
#
#   bench/engine.sh [ROUNDS]        ROUNDS defaults to 5; the 10,000-step run goes 3 times
#
# (a) engine overhead: 500 sequential `argv: [/bin/true]` steps with the SQLite state, the
#     memory state and a PostgreSQL state, against bash running /bin/true 500 times;
# (b) fan-out: 200 independent `sleep 0.2` steps at --concurrency 50, against
#     `seq 200 | xargs -P 50 -I{} sleep 0.2`;
# (c) 1,000 HTTP GET steps at --concurrency 64 against a local threaded server, against
#     `xargs -P 64 curl` on the same server;
# (d) peak RSS of a 10,000-step run (argv /bin/true, memory state).
#
# Variants run interleaved (one of each per round) so that machine noise spreads evenly; the
# table gives the median wall time of the rounds with the range beside it, and the median CPU
# time (user + sys), which a busy machine disturbs less.
# Environment: CAIRN_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test); the PostgreSQL
# state goes to a schema `cairn_bench` of that database, created and dropped here (needs psql;
# without it that variant is skipped).
set -euo pipefail

ROUNDS=${1:-5}
MEM_ROUNDS=3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG=${CAIRN_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=cairn_bench

echo "building release..." >&2
cargo build --quiet --release -p cairn-cli --manifest-path "$ROOT/Cargo.toml" >&2
CAIRN=$ROOT/target/release/cairn

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench.XXXXXX")
SERVER_PID=
HAVE_PSQL=
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n $HAVE_PSQL ]]; then psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
# Steps run in the working directory, and `--state memory:` puts step logs under ./.cairn.
cd "$WORK"

# --- runbooks ---------------------------------------------------------------------------
python3 "$ROOT/bench/gen_runbook.py" 500 --kind true >true-500.yaml
python3 "$ROOT/bench/gen_runbook.py" 200 --kind sleep >sleep-200.yaml
python3 "$ROOT/bench/gen_runbook.py" 10000 --kind true >true-10000.yaml
python3 - >http-1000.yaml <<'PY'
print("cairn: 1\nname: bench-http-1000\ninputs:\n  base: { required: true }\nsteps:")
for i in range(1000):
    print(f"  - id: s{i}\n    needs: []\n    http: {{ get: \"{{{{ inputs.base }}}}/health\" }}")
PY

# --- a local HTTP server: threaded, quiet, HTTP/1.1 keep-alive ----------------------------
python3 - >server.port <<'PY' &
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
sys.stdout.close()
s.serve_forever()
PY
SERVER_PID=$!
for _ in $(seq 100); do [[ -s server.port ]] && break; sleep 0.05; done
BASE="http://127.0.0.1:$(cat server.port)"
curl -sf "$BASE/health" >/dev/null

# --- PostgreSQL state: a schema of its own, through the connection's search_path ----------
if command -v psql >/dev/null &&
    psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null 2>&1; then
    HAVE_PSQL=1
fi
sep='?'
[[ $PG == *\?* ]] && sep='&'
PG_STATE="$PG${sep}options=-csearch_path%3D$SCHEMA"

# --- measuring ----------------------------------------------------------------------------
# measure NAME CMD...: runs CMD (output discarded) under /usr/bin/time and appends
# "wall-seconds cpu-seconds peak-RSS-KB" to NAME.t
measure() {
    local name=$1
    shift
    if ! /usr/bin/time -f "%e %U %S %M" -o "$name.one" "$@" >/dev/null 2>"$name.err"; then
        echo "FAILED: $*" >&2
        tail -5 "$name.err" >&2
        exit 1
    fi
    awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$name.one" >>"$name.t"
}

BASH_TRUE='for _ in $(seq 500); do /bin/true; done'
XARGS_SLEEP='seq 200 | xargs -P 50 -I{} sleep 0.2'
XARGS_CURL="seq 1000 | xargs -P 64 -I{} curl -sf -o /dev/null $BASE/health"

for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    rm -f state.db state.db-*
    measure a_sqlite "$CAIRN" run true-500.yaml --state "$WORK/state.db"
    measure a_memory "$CAIRN" run true-500.yaml --state memory:
    if [[ -n $HAVE_PSQL ]]; then
        measure a_postgres "$CAIRN" run true-500.yaml --state "$PG_STATE"
    fi
    measure a_bash bash -c "$BASH_TRUE"
    measure b_cairn "$CAIRN" run sleep-200.yaml --state memory: --concurrency 50
    measure b_xargs bash -c "$XARGS_SLEEP"
    measure c_cairn "$CAIRN" run http-1000.yaml --state memory: --concurrency 64 --set "base=$BASE"
    measure c_curl bash -c "$XARGS_CURL"
done
for round in $(seq "$MEM_ROUNDS"); do
    echo "10,000 steps: $round/$MEM_ROUNDS" >&2
    measure d_cairn "$CAIRN" run true-10000.yaml --state memory:
done

# --- report: a Markdown table on stdout ---------------------------------------------------
python3 - "$ROUNDS" "$MEM_ROUNDS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import os, statistics, sys
rounds, mem_rounds, cpus, load = sys.argv[1:5]
def col(name, i):
    if not os.path.exists(name + ".t"):
        return None
    return [float(line.split()[i]) for line in open(name + ".t") if line.strip()]
def med(name):
    return statistics.median(col(name, 0))
def row(label, name, base=None, per=None):
    w = col(name, 0)
    if not w:
        print(f"| {label} | skipped (no psql or server) | | | |")
        return
    m = statistics.median(w)
    cpu = statistics.median(col(name, 1))
    ratio = "baseline" if base is None else f"**{m / med(base):.2f}x**"
    extra = f" ({m / per * 1000:.2f} ms/step)" if per else ""
    print(f"| {label} | {m:.2f} s{extra} | {min(w):.2f} – {max(w):.2f} s | {cpu:.2f} s | {ratio} |")
print(f"{cpus} CPUs, load average at the end {load}. Wall: median of {rounds} interleaved rounds, "
      f"range beside it. CPU: median user+sys. Ratio: median wall / baseline median wall.\n")
print("| benchmark | wall (median) | wall range | CPU | ratio |")
print("|---|---|---|---|---|")
row("(a) bash, `/bin/true` × 500", "a_bash", per=500)
row("(a) cairn, 500 × `argv: [/bin/true]`, SQLite state", "a_sqlite", "a_bash", per=500)
row("(a) cairn, same, `--state memory:`", "a_memory", "a_bash", per=500)
row("(a) cairn, same, PostgreSQL state", "a_postgres", "a_bash", per=500)
row("(b) `seq 200 \\| xargs -P 50 -I{} sleep 0.2`", "b_xargs")
row("(b) cairn, 200 × `sleep 0.2`, `--concurrency 50`", "b_cairn", "b_xargs")
row("(c) `seq 1000 \\| xargs -P 64 curl`", "c_curl")
row("(c) cairn, 1,000 × `http: get`, `--concurrency 64`", "c_cairn", "c_curl")
w, cpu, rss = col("d_cairn", 0), col("d_cairn", 1), col("d_cairn", 2)
print(f"| (d) cairn, 10,000 × `argv: [/bin/true]`, `--state memory:` | {statistics.median(w):.1f} s "
      f"({statistics.median(w) / 10:.2f} ms/step) | {min(w):.1f} – {max(w):.1f} s | "
      f"{statistics.median(cpu):.1f} s | peak RSS **{statistics.median(rss) / 1024:.0f} MiB** "
      f"({min(rss) / 1024:.0f} – {max(rss) / 1024:.0f} MiB, {mem_rounds} runs) |")
PY
