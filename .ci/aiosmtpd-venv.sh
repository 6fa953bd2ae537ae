#!/usr/bin/env bash
# Installs, once, the SMTP server that the cairn-notify tests deliver mail to (crates/notify/tests):
# a cached virtualenv with aiosmtpd pinned. Idempotent: a venv that already has the pinned version
# is reused as it is. Prints the path of the venv's `python` on stdout; progress goes to stderr.
#
#   CAIRN_AIOSMTPD_VENV   where the venv lives (default ~/.cache/cairn/aiosmtpd-venv)
set -euo pipefail

version=1.4.6
venv="${CAIRN_AIOSMTPD_VENV:-$HOME/.cache/cairn/aiosmtpd-venv}"
python="$venv/bin/python"

installed() {
    [ -x "$python" ] && "$python" - "$version" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("aiosmtpd") == sys.argv[1] else 1)
PY
}

if ! installed; then
    echo "aiosmtpd-venv: installing aiosmtpd==$version into $venv" >&2
    if [ ! -x "$python" ]; then
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv" >&2 || {
            echo "aiosmtpd-venv: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
            exit 1
        }
    fi
    "$venv/bin/pip" install --disable-pip-version-check --quiet "aiosmtpd==$version" >&2
    installed || { echo "aiosmtpd-venv: aiosmtpd missing from $venv after the install" >&2; exit 1; }
fi
echo "$python"
