#!/usr/bin/env python3
"""Generate a large runbook for benchmarks: N steps with templates, needs and parallel branches.

Usage: gen_runbook.py N [--kind shell|true|sleep] > big.yaml
  shell (default): templated shell, SQL and HTTP steps with needs (validate/plan benchmarks)
  true:            N sequential `argv: [/bin/true]` steps (engine overhead)
  sleep:           N independent `sleep 0.2` steps (fan-out)
"""
import sys

n = int(sys.argv[1])
kind = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--kind" else "shell"
out = [
    "cairn: 1",
    f"name: bench-{kind}-{n}",
    "inputs:",
    "  dir: { default: /tmp/cairn-bench }",
    "  actor: { default: client_1 }",
    "targets:",
    '  db: { postgres: "postgres://postgres@127.0.0.1:5432/test" }',
    "vars:",
    "  stamp: \"{{ run.started_at | strftime('%Y%m%d') }}\"",
    "steps:",
]
for i in range(n):
    if kind == "true":
        out += [f"  - id: s{i}", "    argv: [/bin/true]"]
        continue
    if kind == "sleep":
        out += [f"  - id: s{i}", "    needs: []", "    argv: [sleep, '0.2']"]
        continue
    out.append(f"  - id: s{i}")
    # Every 10th step starts a new branch; others need the step 1 or 2 before them.
    if i % 10 == 0:
        out.append("    needs: []")
    elif i % 3 == 0 and i >= 2:
        out.append(f"    needs: [s{i - 1}, s{i - 2}]")
    # A branch head (needs: []) reads nothing from other steps.
    m = 0 if i % 10 == 0 else i % 3
    if m == 0:
        out += [f"    shell: echo {{{{ inputs.dir }}}}/{i}_{{{{ vars.stamp }}}} {{{{ inputs.actor }}}}",
                f"    outputs: {{ n: \"{{{{ result.stdout | length }}}}\" }}"]
    elif m == 1:
        out += ["    sql:", "      target: db",
                f"      query: SELECT {{{{ steps.s{i - 1}.outputs.n }}}} AS n, {{{{ inputs.actor }}}} AS actor"]
    else:
        out += [f"    http: {{ get: \"http://127.0.0.1:8001/items/{i}?actor={{{{ inputs.actor }}}}\" }}"]
print("\n".join(out))
