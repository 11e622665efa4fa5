#!/usr/bin/env bash
# Push/pull load benchmark against the raw database ceiling measured in the same run (not part
# of the test suite). For each device count: a fresh database with the demo data, a release
# `hamlet serve`, then `hamlet-load` with the ceiling and the server's memory sampled.
#
# Usage: scripts/bench-load.sh [sqlite|postgres] [DEVICES...]     (default: 1 8 64 256)
# Env:   HOUSEHOLDS (default 20000), LOAD_ARGS (more hamlet-load flags), PORT (default 18181)
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND="${1:-postgres}"
shift || true
DEVICES=("$@")
[ ${#DEVICES[@]} -gt 0 ] || DEVICES=(1 8 64 256)
HOUSEHOLDS="${HOUSEHOLDS:-20000}"
PORT="${PORT:-18181}"

cargo build --release -p hamlet-server --bin hamlet
cargo build --release -p hamlet-client --bin hamlet-load

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

if [ "$BACKEND" = postgres ]; then
  PG_ADMIN="$(scripts/pg-up.sh)"
fi

for n in "${DEVICES[@]}"; do
  case "$BACKEND" in
    sqlite) URL="sqlite://$WORK/bench-$n.db" ;;
    postgres)
      DB="hamlet_bench_$n"
      psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
      URL="${PG_ADMIN%/postgres}/$DB"
      ;;
    *) echo "usage: $0 [sqlite|postgres] [DEVICES...]" >&2; exit 2 ;;
  esac
  HAMLET_DATABASE_URL="$URL" target/release/hamlet demo seed >/dev/null
  HAMLET_DATABASE_URL="$URL" HAMLET_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    target/release/hamlet serve --bind "127.0.0.1:$PORT" >"$WORK/server-$n.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "=== $BACKEND, $n device(s), $HOUSEHOLDS households ==="
  # shellcheck disable=SC2086
  HAMLET_LOAD_PASSWORD=demo-password-2025 target/release/hamlet-load \
    --server "http://127.0.0.1:$PORT" --devices "$n" --households "$HOUSEHOLDS" \
    --database-url "$URL" --server-pid "$SERVER_PID" --quiet ${LOAD_ARGS:-}
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  if [ "$BACKEND" = postgres ]; then
    psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  fi
done
