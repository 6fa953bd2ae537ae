#!/usr/bin/env bash
# The test command of the README: every crate's tests against the real PostgreSQL, MariaDB,
# a real Chroma server (installed on first use into a cached virtualenv), real child processes
# and local HTTP servers started by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CAIRN_CHROMA_BIN:-}" ]; then
  CAIRN_CHROMA_BIN="$(bash .ci/chroma-venv.sh)"
  export CAIRN_CHROMA_BIN
fi
cargo test --workspace --all-targets
cargo test --workspace --doc
