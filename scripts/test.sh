#!/usr/bin/env bash
# The whole test suite on both backends: starts PostgreSQL (and installs Chromium and
# schemathesis) if needed, builds the `hamlet`, `hamlet-client` and `hamlet-load` binaries the
# CLI tests run, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

HAMLET_TEST_PG_URL="$(scripts/pg-up.sh)"
export HAMLET_TEST_PG_URL
# Chromium and chromedriver for the dashboard's browser tests.
scripts/browser-up.sh
# schemathesis for tests/tests/schemathesis.rs.
HAMLET_SCHEMATHESIS="$(scripts/schemathesis-up.sh)"
export HAMLET_SCHEMATHESIS

# The workspace's binaries with the workspace's features (as the test build resolves them), so
# the test build reuses these artifacts instead of building the server a second time.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
