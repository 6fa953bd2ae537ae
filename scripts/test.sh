#!/usr/bin/env bash
# The test command of the README: every crate's tests against the real PostgreSQL, MariaDB,
# a real Chroma server, an aiosmtpd SMTP server and check-jsonschema (each installed on first use into a cached virtualenv),
# real child processes and local HTTP servers started by the tests; then the game days
# (scripts/gameday.sh: needs root for a tmpfs mount and a second Unix user).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CAIRN_CHROMA_BIN:-}" ]; then
  CAIRN_CHROMA_BIN="$(bash .ci/chroma-venv.sh)"
  export CAIRN_CHROMA_BIN
fi
if [ -z "${CAIRN_AIOSMTPD_PYTHON:-}" ]; then
  # aiosmtpd: the real SMTP server the notification tests deliver mail to.
  CAIRN_AIOSMTPD_PYTHON="$(bash .ci/aiosmtpd-venv.sh)"
  export CAIRN_AIOSMTPD_PYTHON
fi
if [ -z "${CAIRN_CHECK_JSONSCHEMA:-}" ]; then
  # check-jsonschema: the schema is checked with the validator editors use.
  CAIRN_CHECK_JSONSCHEMA="$(bash .ci/check-jsonschema.sh)"
  export CAIRN_CHECK_JSONSCHEMA
fi
if [ -z "${CAIRN_SCHEMATHESIS_BIN:-}" ]; then
  # schemathesis and openapi-spec-validator: the API of `cairn serve` is validated and fuzzed.
  CAIRN_SCHEMATHESIS_BIN="$(bash .ci/schemathesis-venv.sh)"
  export CAIRN_SCHEMATHESIS_BIN
fi
if [ -z "${CAIRN_PLAYWRIGHT_NODE_MODULES:-}" ]; then
  # Debian's chromium and playwright-core: the browser tests of `cairn serve`.
  CAIRN_PLAYWRIGHT_NODE_MODULES="$(bash .ci/playwright.sh)"
  export CAIRN_PLAYWRIGHT_NODE_MODULES
fi
if [ -z "${CAIRN_NODE_MODULES:-}" ]; then
  # xmllint, promtool and the Mermaid parser: the real consumers of the report formats.
  CAIRN_NODE_MODULES="$(bash .ci/consumers.sh)"
  export CAIRN_NODE_MODULES
fi
# The crash-and-resume simulation: 100 generated runbooks (its default of 15 is for a quick
# `cargo test`); scripts/sim.sh runs thousands.
export SIM_CASES="${SIM_CASES:-100}"
# Property tests draw from one fixed seed, so a run is reproducible; another seed explores more
# (PROPTEST_RNG_SEED=$RANDOM bash scripts/test.sh), and what it finds becomes a named test.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-24301}"
# No crate's modules import each other in a circle (a module imports only modules below it).
python3 scripts/import-circles.py --self-test
python3 scripts/import-circles.py
cargo test --workspace --all-targets
cargo test --workspace --doc
cargo build -q -p cairn-cli
# The shipped runbooks' own tests (docs/testing.md): every gate's yes and no and every `when`,
# on fixtures, through the real engine, in seconds; JUnit for the CI server.
"${CARGO_TARGET_DIR:-target}/debug/cairn" test runbooks/ --coverage \
    --junit "${CARGO_TARGET_DIR:-target}/runbook-tests.junit.xml"
# The game days: every procedure of the manual against its real fault (runbooks/gameday/).
CAIRN_BIN="${CARGO_TARGET_DIR:-target}/debug/cairn" bash scripts/gameday.sh
