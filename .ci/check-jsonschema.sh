#!/usr/bin/env bash
# Installs, once, check-jsonschema (the validator editors and pre-commit hooks use), with which the
# cairn-model schema test checks schemas/runbook.schema.json against the project's runbooks and
# against steps with no kind or two: a cached virtualenv with the tool pinned. Idempotent. Prints
# the path of the `check-jsonschema` binary on stdout; progress goes to stderr.
#
#   CAIRN_CHECK_JSONSCHEMA_VENV   where the venv lives (default ~/.cache/cairn/check-jsonschema-venv)
set -euo pipefail

version=0.39.0
venv="${CAIRN_CHECK_JSONSCHEMA_VENV:-$HOME/.cache/cairn/check-jsonschema-venv}"
bin="$venv/bin/check-jsonschema"

installed() {
    [ -x "$bin" ] && "$venv/bin/python" - "$version" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("check-jsonschema") == sys.argv[1] else 1)
PY
}

if ! installed; then
    echo "check-jsonschema: installing check-jsonschema==$version into $venv" >&2
    if [ ! -x "$venv/bin/python" ]; then
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv" >&2 || {
            echo "check-jsonschema: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
            exit 1
        }
    fi
    "$venv/bin/pip" install --disable-pip-version-check --quiet "check-jsonschema==$version" >&2
    installed || { echo "check-jsonschema: $bin missing after the install" >&2; exit 1; }
fi
echo "$bin"
