#!/usr/bin/env bash
# Starts the machine's PostgreSQL (Debian cluster) if it is not running, and makes sure the test
# role exists. Safe to run again. Prints the admin URL tests use on stdout.
set -euo pipefail

ROLE=hamlet_test
PASSWORD=hamlet_test

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  echo "PostgreSQL is not installed; installing Debian's package..." >&2
  if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install postgresql" >&2; exit 1; fi
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

# The first cluster listed (Debian: 15 main on this project's machines).
read -r VERSION CLUSTER PORT STATUS _ < <(pg_lsclusters --no-header | head -n 1)
if [ -z "${VERSION:-}" ]; then
  echo "no PostgreSQL cluster found; creating one" >&2
  pg_createcluster 15 main >&2
  read -r VERSION CLUSTER PORT STATUS _ < <(pg_lsclusters --no-header | head -n 1)
fi
if [ "$STATUS" != online ]; then
  echo "starting PostgreSQL $VERSION/$CLUSTER on port $PORT" >&2
  pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$PORT" && break
  sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || { echo "PostgreSQL did not become ready" >&2; exit 1; }

as_postgres psql -q -p "$PORT" -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END \$\$;
SQL

# Throwaway databases left by interrupted runs: `hamlet_t_<pid>_<uuid>`, dropped only when that
# test process is gone, so a test run going on beside this script keeps its databases.
for db in $(as_postgres psql -p "$PORT" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'hamlet\_t\_%'"); do
  pid="${db#hamlet_t_}"
  pid="${pid%%_*}"
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ]; then
    continue
  fi
  as_postgres psql -q -p "$PORT" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done

echo "postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/postgres"
