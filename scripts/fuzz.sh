#!/usr/bin/env bash
# A bounded cargo-fuzz run of every target in fuzz/ (not part of CI: it needs the nightly
# toolchain, and a meaningful run takes minutes per target). Findings land in
# fuzz/artifacts/TARGET/; a crash makes the script fail. Keep what a crash found as a regression
# test in the crate it belongs to, and its input as a seed in fuzz/corpus/TARGET/seed-*.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 600 s, every target)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(hlc push_envelope push units_csv)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "scripts/fuzz.sh: cargo fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

cargo +nightly fuzz build -O
for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s"
  # The committed seeds are read from the corpus folder; what the fuzzer adds there is ignored by git.
  cargo +nightly fuzz run -O "$target" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 | tail -n 25
done
