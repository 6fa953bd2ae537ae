#!/usr/bin/env bash
# The test command of the README: every crate's tests against the real PostgreSQL, MariaDB,
# Chroma server, child processes and a local HTTP server.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
cargo test --workspace --doc
