#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver (for the dashboard's browser tests) when
# /usr/bin/chromedriver is missing, plus a font with Vietnamese glyphs. Safe to run again.
# Nothing is downloaded but Debian's packages.
set -euo pipefail

if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "installing Debian's chromium and chromium-driver..." >&2
if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install chromium chromium-driver" >&2; exit 1; fi
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >&2
