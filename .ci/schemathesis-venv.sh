#!/usr/bin/env bash
# Installs, once, the API checkers of the `cairn serve` tests: schemathesis (a fuzzer that sends
# requests generated from the OpenAPI document and fails on any 5xx) and openapi-spec-validator
# (the document itself is valid OpenAPI 3.1), in a cached virtualenv with both pinned. Idempotent.
# Prints the venv's bin folder on stdout; progress goes to stderr.
#
#   CAIRN_SCHEMATHESIS_VENV   where the venv lives (default ~/.cache/cairn/schemathesis-venv)
set -euo pipefail

schemathesis=4.32.5
validator=0.9.0
venv="${CAIRN_SCHEMATHESIS_VENV:-$HOME/.cache/cairn/schemathesis-venv}"

installed() {
    [ -x "$venv/bin/schemathesis" ] && [ -x "$venv/bin/openapi-spec-validator" ] &&
        "$venv/bin/python" - "$schemathesis" "$validator" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
ok = version("schemathesis") == sys.argv[1] and version("openapi-spec-validator") == sys.argv[2]
sys.exit(0 if ok else 1)
PY
}

if ! installed; then
    echo "schemathesis-venv: installing schemathesis==$schemathesis openapi-spec-validator==$validator into $venv" >&2
    if [ ! -x "$venv/bin/python" ]; then
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv" >&2 || {
            echo "schemathesis-venv: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
            exit 1
        }
    fi
    "$venv/bin/pip" install --disable-pip-version-check --quiet \
        "schemathesis==$schemathesis" "openapi-spec-validator==$validator" >&2
    installed || { echo "schemathesis-venv: the tools are missing after the install" >&2; exit 1; }
fi
echo "$venv/bin"
