#!/usr/bin/env bash
# Writes PNGs of the dashboard's main pages to docs/img/ (the browser test takes them when
# HAMLET_SCREENSHOTS_DIR is set). Runs the SQLite browser test only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/browser-up.sh
HAMLET_SCREENSHOTS_DIR="$PWD/docs/img" cargo test -p hamlet-tests --test e2e -- --exact dashboard::sqlite::dashboard_in_a_browser
