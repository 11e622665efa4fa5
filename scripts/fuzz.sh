#!/usr/bin/env bash
# A bounded cargo-fuzz run of every target in fuzz/ (not part of CI: it needs the nightly
# toolchain, and a meaningful run takes minutes per target). Each target's whole output goes to
# fuzz/artifacts/TARGET.log, a crash's input to fuzz/artifacts/TARGET/; every target runs, and
# the script fails at the end if any crashed. Keep what a crash found as a regression test in
# the crate it belongs to, and its input as a seed in fuzz/corpus/TARGET/seed-*. The `push` and
# `units_csv` targets keep one database across inputs (500 pushes, 200 imports), so a crash of
# theirs may need the inputs before it: rerun the target on its corpus to reproduce.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 600 s, every target)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(hlc push_envelope push units_csv)
fi

if ! grep -q '^nightly' <<<"$(rustup toolchain list)"; then
  echo "scripts/fuzz.sh: cargo fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

cargo +nightly fuzz build -O
mkdir -p artifacts
failed=()
for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s (log: fuzz/artifacts/$target.log)"
  # The committed seeds are read from the corpus folder; what the fuzzer adds there is ignored by git.
  if cargo +nightly fuzz run -O "$target" -- -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 >"artifacts/$target.log" 2>&1; then
    grep -E '^(Done|stat::)' "artifacts/$target.log" || true
  else
    echo "$target FAILED:" >&2
    grep -E -A 20 'panicked|ERROR: libFuzzer' "artifacts/$target.log" | head -n 40 >&2 || true
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
