#!/usr/bin/env bash
# `cairn serve`'s live log (not a test): see docs/performance.md, "## The web console".
#
#   bench/serve-live.sh [CLIENTS] [SECONDS]     defaults: 200 clients, 10 s for each measure
#
# A real `cairn run` whose step prints a line every 100 ms, its wall-clock time in nanoseconds,
# and a real `cairn serve` over the run's SQLite store. Then, over real HTTP (Server-Sent
# Events, plain sockets):
#   1. one client: each line's delay from the step's `date` to the client's reading it;
#   2. CLIENTS clients on the same step: the server's CPU (utime + stime of its process, from
#      /proc) over SECONDS, as a share of one core, and the lines' delays at every client.
# Environment: CAIRN_BIN (default: a release build).
set -euo pipefail

CLIENTS=${1:-200}
SECONDS_EACH=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${CAIRN_BIN:-}" ]; then
  cargo build --release -q -p cairn-cli --manifest-path "$ROOT/Cargo.toml"
  CAIRN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"
fi
WORK=$(mktemp -d)
RUN_PID=""
SERVER=""
# Both processes are stopped whatever happens.
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; [ -n "$RUN_PID" ] && kill "$RUN_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
cd "$WORK"
mkdir .cairn
LINES=$(( (SECONDS_EACH * 2 + 15) * 10 ))
cat > live.yaml <<YAML
cairn: 1
name: live
steps:
  - id: talk
    shell: |
      for i in \$(seq 1 $LINES); do date +%s%N; sleep 0.1; done
YAML
"$CAIRN_BIN" run live.yaml --state "sqlite://$WORK/.cairn/state.db" > run.out 2> run.err &
RUN_PID=$!
for _ in $(seq 1 100); do [ -s run.out ] && break; sleep 0.1; done
RUN_ID=$(head -1 run.out)
"$CAIRN_BIN" serve --state "sqlite://$WORK/.cairn/state.db" --listen 127.0.0.1:0 > serve.out 2> serve.err &
SERVER=$!
for _ in $(seq 1 100); do [ -s serve.out ] && break; sleep 0.1; done
URL=$(head -1 serve.out)

python3 - "${URL%/}" "$RUN_ID" "$SERVER" "$CLIENTS" "$SECONDS_EACH" <<'PY'
import json, os, selectors, socket, statistics, sys, time, urllib.parse

base, run, pid, clients, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port
tick = os.sysconf("SC_CLK_TCK")

def cpu_ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime

# The step must be running (its record) before a stream is asked for.
import urllib.request
deadline = time.time() + 30
while True:
    v = json.load(urllib.request.urlopen(f"{base}/api/runs/{run}"))
    if any(s["step_id"] == "talk" and s["status"] == "running" for s in v["steps"]):
        break
    assert time.time() < deadline, "the step never ran"
    time.sleep(0.1)

class Client:
    def __init__(self):
        self.sock = socket.create_connection((host, port))
        self.sock.sendall(f"GET /api/runs/{run}/steps/talk/log HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        self.sock.setblocking(False)
        self.buf = b""
        self.head = False
        self.delays = []
    def read(self, now_ns):
        data = self.sock.recv(1 << 16)
        if not data:
            return False
        self.buf += data
        if not self.head:
            if b"\r\n\r\n" not in self.buf:
                return True
            self.head, self.buf = True, self.buf.split(b"\r\n\r\n", 1)[1]
        # Chunked transfer: the event lines are found whatever the chunk framing around them.
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if line.startswith(b"data: "):
                try:
                    text = json.loads(line[6:])["text"]
                except (ValueError, KeyError):
                    continue
                for stamp in text.split("\n"):
                    if stamp.strip().isdigit():
                        self.delays.append((now_ns - int(stamp)) / 1e6)
        return True

def follow(n, secs):
    sel = selectors.DefaultSelector()
    cs = [Client() for _ in range(n)]
    for c in cs:
        sel.register(c.sock, selectors.EVENT_READ, c)
    # The first events are the tail the stream opens with (old lines): not counted.
    warm = time.time() + 1.5
    while time.time() < warm:
        for key, _ in sel.select(0.1):
            key.data.read(time.time_ns())
    for c in cs:
        c.delays.clear()
    t0, c0 = time.time(), cpu_ticks()
    while time.time() - t0 < secs:
        for key, _ in sel.select(0.1):
            key.data.read(time.time_ns())
    cpu = (cpu_ticks() - c0) / tick / (time.time() - t0)
    delays = sorted(d for c in cs for d in c.delays)
    for c in cs:
        c.sock.close()
    return cpu, delays

def row(label, cpu, delays):
    p = lambda q: delays[min(len(delays) - 1, int(len(delays) * q))]
    print(f"| {label} | {len(delays)} | {statistics.median(delays):.0f} | {p(0.95):.0f} | {delays[-1]:.0f} | {cpu * 100:.1f} % |")

print("| clients | lines received | delay median (ms) | p95 (ms) | max (ms) | server CPU (one core) |")
print("|---|---:|---:|---:|---:|---:|")
cpu, d = follow(1, seconds)
row("1", cpu, d)
cpu, d = follow(clients, seconds)
row(str(clients), cpu, d)
PY
