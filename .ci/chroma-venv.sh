#!/usr/bin/env bash
# Installs, once, the Chroma server that the cairn-steps tests start (tests/common/chroma_server.rs):
# a cached virtualenv with chromadb pinned. Idempotent: a venv that already has the pinned version
# is reused as it is. Prints the path of the `chroma` binary on stdout; progress goes to stderr.
#
#   CAIRN_CHROMA_VENV   where the venv lives (default ~/.cache/cairn/chroma-venv)
set -euo pipefail

version=1.5.9
venv="${CAIRN_CHROMA_VENV:-$HOME/.cache/cairn/chroma-venv}"
bin="$venv/bin/chroma"

installed() {
    [ -x "$bin" ] && "$venv/bin/python" - "$version" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("chromadb") == sys.argv[1] else 1)
PY
}

if ! installed; then
    echo "chroma-venv: installing chromadb==$version into $venv (about a minute, ~500 MB)" >&2
    if [ ! -x "$venv/bin/python" ]; then
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv" >&2 || {
            echo "chroma-venv: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
            exit 1
        }
    fi
    "$venv/bin/pip" install --disable-pip-version-check --quiet "chromadb==$version" >&2
    installed || { echo "chroma-venv: $bin missing after the install" >&2; exit 1; }
fi
echo "$bin"
