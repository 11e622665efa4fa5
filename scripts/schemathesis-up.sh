#!/usr/bin/env bash
# Installs schemathesis (pinned) in a virtualenv under the cargo target folder if it is not
# there yet, and prints the path of its command on stdout. Safe to run again. Needs Python 3
# with venv and pip; on Debian without them, installs python3-venv (root).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
venv="${CARGO_TARGET_DIR:-$PWD/target}/schemathesis-$VERSION"
if [ ! -x "$venv/bin/schemathesis" ]; then
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "installing Debian's python3-venv..." >&2
    if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install python3-venv" >&2; exit 1; fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  fi
  echo "installing schemathesis $VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
fi
echo "$venv/bin/schemathesis"
