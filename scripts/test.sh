#!/usr/bin/env bash
# README command 2: installs what is needed, builds, and runs every test — first the normal
# build, then the whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer, then
# the libFuzzer targets for a bounded time (30 s each).
#
#   scripts/test.sh [--quick]     --quick skips the sanitizer and fuzzing passes
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
  "") ;;
  *) echo "test.sh: unknown option '$1' (valid: --quick)" >&2; exit 2 ;;
esac

jobs=$(nproc)
scripts/setup.sh
echo "== tests (build/)"
ctest --test-dir build --output-on-failure -j "$jobs"
if [ "$quick" = 0 ]; then
  scripts/setup.sh --sanitize
  echo "== tests under ASan+UBSan (build-asan/)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs"
  echo "== fuzzing (build-fuzz/)"
  scripts/fuzz.sh 30
fi
