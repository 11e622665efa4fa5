#!/usr/bin/env bash
# Installs schemathesis (pinned) in a virtualenv under the cargo target folder if it is not
# there yet, and prints the path of its command on stdout. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
venv="${CARGO_TARGET_DIR:-$PWD/target}/schemathesis-$VERSION"
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "installing schemathesis $VERSION into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
fi
echo "$venv/bin/schemathesis"
