#!/usr/bin/env bash
# National-scale aggregate read benchmark (not part of the test suite). Builds in release mode.
# Usage: scripts/bench-aggregates.sh [postgres|sqlite]
set -euo pipefail
cd "$(dirname "$0")/.."
HAMLET_TEST_PG_URL="$(scripts/pg-up.sh)"
export HAMLET_TEST_PG_URL
cargo bench -p hamlet-tests --bench national_aggregates -- "${1:-postgres}"
