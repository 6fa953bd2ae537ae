#!/usr/bin/env python3
"""Stand-ins for the Memory System's three APIs, for drills and CI.

    standins.py STATE_DIR CERT KEY INTERNAL_PORT EXTERNAL_PORT MCP_PORT

Answers GET /health on 127.0.0.1: the internal API and the MCP API over HTTP, the external API
over HTTPS with the given (self-signed) certificate. While STATE_DIR/memory-service.stopped
exists, every API answers 503, as a stopped service would fail its health check: the drill's
stop and start commands create and remove that file. While STATE_DIR/slow-ms exists, every answer
waits the number of milliseconds it holds (game days: a slow API). GET /v1/... stands in for the
APIs' endpoints (200, an empty result); while STATE_DIR/rate-limit holds N, each API answers at
most N of them per sliding minute and the rest 429 with a Retry-After header and the manual's
MEM-006 error (game days: rate limiting on or off). Each request is appended to
STATE_DIR/access.log in the combined log format (status in field 9, as nginx writes it), the
log the health check reads its error rate from. Runs until STATE_DIR/stop exists, then exits 0.
"""
import http.server
import json
import os
import ssl
import sys
import threading
import time


def main():
    state, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
    ports = [int(p) for p in sys.argv[4:7]]
    names = ["internal", "external", "mcp"]
    log_lock = threading.Lock()
    # Per API: the times of the /v1/ requests answered in the last minute.
    served = {name: [] for name in names}

    def rate_limited(api):
        try:
            with open(os.path.join(state, "rate-limit")) as f:
                limit = int(f.read().strip())
        except (OSError, ValueError):
            return None
        now = time.monotonic()
        with log_lock:
            recent = [t for t in served[api] if now - t < 60]
            if len(recent) >= limit:
                served[api] = recent
                return max(1, int(60 - (now - recent[0])) + 1)
            recent.append(now)
            served[api] = recent
        return None

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            started = time.monotonic()
            stopped = os.path.exists(os.path.join(state, "memory-service.stopped"))
            try:
                with open(os.path.join(state, "slow-ms")) as f:
                    time.sleep(float(f.read().strip() or 0) / 1000)
            except (OSError, ValueError):
                pass
            retry_after = None
            if self.path.startswith("/v1/") and not stopped:
                retry_after = rate_limited(self.server.api)
                if retry_after is None:
                    status, body = 200, {"results": [], "api": self.server.api}
                else:
                    status, body = 429, {"error": {"code": "MEM-006", "message": "Rate limit exceeded"}}
            elif self.path.rstrip("/") != "/health":
                status, body = 404, {"error": "not found"}
            elif stopped:
                status, body = 503, {"status": "stopped", "api": self.server.api}
            else:
                status, body = 200, {"status": "ok", "api": self.server.api}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            if retry_after is not None:
                self.send_header("retry-after", str(retry_after))
            self.end_headers()
            self.wfile.write(data)
            ms = (time.monotonic() - started) * 1000
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
            line = f'127.0.0.1 - - [{stamp}] "GET {self.path} HTTP/1.1" {status} {len(data)} "-" "{self.server.api}" {ms:.1f}\n'
            with log_lock, open(os.path.join(state, "access.log"), "a") as f:
                f.write(line)

        def log_message(self, *args):
            pass

    servers = []
    for name, port in zip(names, ports):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
        srv.api = name
        if name == "external":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    print(f"stand-ins listening on {ports}", flush=True)
    stop = os.path.join(state, "stop")
    while not os.path.exists(stop):
        time.sleep(0.2)
    for srv in servers:
        srv.shutdown()


if __name__ == "__main__":
    main()
