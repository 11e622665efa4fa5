#!/usr/bin/env bash
# The SIGKILL loop of tests/tests/crash.rs with 20 kills per backend (CI runs 3): `hamlet serve`
# is killed at random points of a push stream and restarted; after every kill `hamlet verify`
# must be clean, and at the end every acknowledged record is stored exactly once.
# Usage: scripts/crash-loop.sh [ROUNDS]   (default 20; also HAMLET_CRASH_ROUNDS)
set -euo pipefail
cd "$(dirname "$0")/.."

HAMLET_CRASH_ROUNDS="${1:-${HAMLET_CRASH_ROUNDS:-20}}"
export HAMLET_CRASH_ROUNDS
# An already exported URL is used as it is (pg-up.sh also drops leftover test databases).
HAMLET_TEST_PG_URL="${HAMLET_TEST_PG_URL:-$(scripts/pg-up.sh)}"
export HAMLET_TEST_PG_URL

cargo build --bin hamlet
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p hamlet-tests --test e2e --no-capture -E 'test(/^crash::/)'
else
  cargo test -p hamlet-tests --test e2e -- --nocapture --test-threads=1 crash::
fi
