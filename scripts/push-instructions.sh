#!/usr/bin/env bash
# Instructions the push service executes for a small fixed workload, counted by callgrind: a
# deterministic measure (two runs agree within 0.1 %) for comparing builds on a machine whose
# speed varies by 2x between runs. Not part of the test suite.
#
# Counts only inside `hamlet_server::sync::push::Incoming::parse` and
# `hamlet_shared::sync::read_mutation` (each mutation parsed and validated, in the request
# handler; the first may be inlined) and
# `hamlet_server::sync::push::push` (the blocking part of a push: merge,
# counting, row building, statements), not the HTTP layer or PostgreSQL.
#
# Usage: scripts/push-instructions.sh [HAMLET_BINARY]      (default: target/release/hamlet)
# Env:   HOUSEHOLDS (default 1000), PORT (default 18184)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-target/release/hamlet}"
HOUSEHOLDS="${HOUSEHOLDS:-1000}"
PORT="${PORT:-18184}"

if ! command -v valgrind >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then echo "valgrind is not installed" >&2; exit 1; fi
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >&2
fi
cargo build --release -p hamlet-server --bin hamlet
cargo build --release -p hamlet-client --bin hamlet-load

PG_ADMIN="$(scripts/pg-up.sh)"
DB="hamlet_instructions_$$"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql -q "$PG_ADMIN" -c "CREATE DATABASE $DB" >/dev/null
URL="${PG_ADMIN%/postgres}/$DB"
HAMLET_DATABASE_URL="$URL" target/release/hamlet demo seed >/dev/null
# No background fold during the run: its work would land in the count or not by timing.
HAMLET_FOLD_INTERVAL_SECS=3600 HAMLET_DATABASE_URL="$URL" \
  HAMLET_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
  --toggle-collect='hamlet_server::sync::push::push*' \
  --toggle-collect='hamlet_server::sync::push::Incoming::parse*' \
  --toggle-collect='hamlet_shared::sync::read_mutation*' \
  "$BIN" serve --bind "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
# One village, four phones, no concurrent edits: the same mutations in the same batches each run.
HAMLET_LOAD_PASSWORD=demo-password-2025 target/release/hamlet-load \
  --server "http://127.0.0.1:$PORT" --devices 4 --households "$HOUSEHOLDS" --conflicts 0 --quiet |
  grep -E "^(push|check):"
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
callgrind_annotate "$WORK/callgrind.out" 2>/dev/null | grep -m1 "PROGRAM TOTALS" |
  sed 's/PROGRAM TOTALS/instructions in the push service/'
