#!/usr/bin/env bash
# Kiln under the sanitizers (docs/reliability.md). Outside .ci/run: it is a
# second build of everything with clang (tens of minutes on 2 cores the
# first time).
#
#   scripts/sanitize.sh            AddressSanitizer + UndefinedBehaviorSanitizer
#                                  (CMakePresets.json `asan`, build-asan/):
#                                  the GoogleTest suite, the fuzz inputs and
#                                  the end-to-end suite
#   scripts/sanitize.sh --thread   ThreadSanitizer (`tsan`, build-tsan/): the
#                                  GoogleTest suite, sessions of one module on
#                                  many threads included
#   ... -- PYTEST_ARGS             passed to pytest (e.g. -k threads)
#
# Every report is written under build-*/sanitizer-logs/; the run fails if
# there is any, and prints them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '==> %s\n' "$*" >&2; }

MODE=asan
PYTEST_ARGS=()
while (($#)); do
  case "$1" in
    --thread) MODE=tsan ;;
    --) shift; PYTEST_ARGS=("$@"); break ;;
    *) echo "usage: scripts/sanitize.sh [--thread] [-- PYTEST_ARGS]" >&2; exit 2 ;;
  esac
  shift
done

# The ordinary setup first (Debian packages, the virtualenv), then clang and
# its sanitizer runtimes.
source "$ROOT/scripts/sanitizer/clang.sh"

BUILD="$ROOT/build-$MODE"
[ -f "$BUILD/build.ninja" ] || cmake --preset "$MODE" >/dev/null
LOGS="$BUILD/sanitizer-logs"
rm -rf "$LOGS"; mkdir -p "$LOGS"
SUPP="$ROOT/scripts/sanitizer"
export ASAN_OPTIONS="log_path=$LOGS/asan:detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="log_path=$LOGS/ubsan:print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
export TSAN_OPTIONS="log_path=$LOGS/tsan:halt_on_error=0:second_deadlock_stack=1"

if [ "$MODE" = tsan ]; then
  say "building the GoogleTest suite with ThreadSanitizer in $BUILD"
  ninja -C "$BUILD" kiln-unit-tests kiln-test-kernel kiln-mock-cuda | { grep -v '^\[' || true; }
  say "GoogleTest under ThreadSanitizer"
  "$BUILD/bin/kiln-unit-tests" --gtest_brief=1 || status=$?
else
  say "building with AddressSanitizer and UBSan in $BUILD (long the first time)"
  ninja -C "$BUILD" | { grep -v '^\[' || true; }
  status=0
  say "GoogleTest"
  "$BUILD/bin/kiln-unit-tests" --gtest_brief=1 || status=$?
  say "fuzz inputs (test/fuzz)"
  "$BUILD/bin/kiln-fuzz-replay" "$ROOT/test/fuzz" || status=$?
  # Not the two suites that link the runtime into an uninstrumented
  # application (the installed package, the bundle's glibc floor): an
  # instrumented runtime needs the sanitizer's own runtime linked in.
  say "end-to-end suite"
  KILN_BIN="$BUILD/bin/kiln" KILN_BUILD_DIR="$BUILD" \
    "$ROOT/.venv/bin/python" -m pytest -q -n auto -p no:cacheprovider \
    --ignore="$ROOT/test/e2e/test_install.py" \
    --ignore="$ROOT/test/e2e/test_bundle.py" \
    "$ROOT/test/e2e" "${PYTEST_ARGS[@]}" || status=$?
fi

if [ -n "$(find "$LOGS" -type f)" ]; then
  say "sanitizer reports:"
  find "$LOGS" -type f -print -exec cat {} \;
  exit 1
fi
if [ "${status:-0}" -ne 0 ]; then
  say "tests failed (no sanitizer report)"
  exit "$status"
fi
say "clean: no sanitizer report"
