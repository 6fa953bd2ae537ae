#!/usr/bin/env python3
"""Share of 5xx answers among the requests of an access log (combined format) in a time window.

    error-rate.py ACCESS_LOG WINDOW_MINUTES [SINCE]

Counts the requests logged in the last WINDOW_MINUTES minutes and, when SINCE (RFC 3339, e.g.
2026-12-06T15:04:17Z) is given, only those at or after it: a verification after a recovery
passes the recovery's time, so the outage's own errors are not held against it. Prints
"REQUESTS ERRORS PERCENT WINDOW_START" (the start as RFC 3339 UTC). The status is the field after
the quoted request line; the time is the bracketed one ([06/Dec/2026:15:04:17 +0000]). A line
whose time cannot be read fails (exit 1, naming the line): a log in another format is not
judged by guess.
"""
import re
import sys
from datetime import datetime, timedelta, timezone

LINE = re.compile(r'^\S+ \S+ \S+ \[([^\]]+)\] "[^"]*" (\d{3}) ')


def main():
    path, minutes = sys.argv[1], float(sys.argv[2])
    since = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    start = datetime.now(timezone.utc) - timedelta(minutes=minutes)
    if since:
        start = max(start, datetime.fromisoformat(since.replace("Z", "+00:00")))
    requests = errors = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = LINE.match(line)
            if not m:
                sys.exit("%s:%d: not a combined-format line: %s" % (path, number, line.strip()[:120]))
            when = datetime.strptime(m.group(1), "%d/%b/%Y:%H:%M:%S %z")
            if when >= start.replace(microsecond=0):
                requests += 1
                errors += m.group(2).startswith("5")
    pct = errors * 100.0 / requests if requests else 0.0
    print("%d %d %.2f %s" % (requests, errors, pct, start.strftime("%Y-%m-%dT%H:%M:%SZ")))


if __name__ == "__main__":
    main()
