#!/usr/bin/env bash
# Fuzzes Kiln's readers of outside input with libFuzzer, under AddressSanitizer
# and UBSan (fuzz/FuzzTarget.h, docs/reliability.md). Outside .ci/run: it needs
# the clang build (CMakePresets.json `asan`, build-asan/; ~17 minutes on 2
# cores the first time for the fuzz targets), which the CI's budget cannot hold.
#
#   scripts/fuzz.sh [--minutes N] [--jobs J] [TARGET...]
#
# TARGET: artifact, onnx, tensor, checkpoint, tokenizer (default: all), each
# fuzzed for N minutes (default 10), J targets at a time (default 1). The
# working corpus grows in build-fuzz-corpus/TARGET (the committed seeds in
# test/fuzz/TARGET are read, never written); inputs that crash, leak or hang
# land in build-asan/fuzz-findings/TARGET/. Once the bug is fixed, copy the
# input to test/fuzz/TARGET/ (keeping its crash-/leak-/timeout- name): the
# ordinary test suite replays it from then on (ctest's fuzz-replay).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '==> %s\n' "$*" >&2; }

MINUTES=10 JOBS=1 TARGETS=()
while (($#)); do
  case "$1" in
    --minutes) MINUTES="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    artifact|onnx|tensor|checkpoint|tokenizer) TARGETS+=("$1") ;;
    *) echo "usage: scripts/fuzz.sh [--minutes N] [--jobs J] [TARGET...]" >&2
       exit 2 ;;
  esac
  shift
done
((${#TARGETS[@]})) || TARGETS=(artifact onnx tensor checkpoint tokenizer)

source "$ROOT/scripts/sanitizer/clang.sh"
BUILD="$ROOT/build-asan"
[ -f "$BUILD/build.ninja" ] || cmake --preset asan >/dev/null
say "building the fuzz targets in $BUILD"
ninja -C "$BUILD" $(printf 'kiln-fuzz-%s ' "${TARGETS[@]}") | { grep -v '^\[' || true; }

export ASAN_OPTIONS="detect_leaks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$ROOT/scripts/sanitizer/lsan.supp:print_suppressions=0"
fuzz_one() {
  local target="$1"
  local corpus="$ROOT/build-fuzz-corpus/$target"
  local findings="$BUILD/fuzz-findings/$target"
  mkdir -p "$corpus" "$findings"
  local log="$findings/fuzz.log"
  say "fuzzing $target for $MINUTES minute(s) (log: $log)"
  set +e
  "$BUILD/bin/kiln-fuzz-$target" "$corpus" "$ROOT/test/fuzz/$target" \
    -max_total_time=$((MINUTES * 60)) -timeout=30 -rss_limit_mb=4096 \
    -max_len=1048576 -artifact_prefix="$findings/" -print_final_stats=1 \
    >"$log" 2>&1
  local status=$?
  set -e
  local execs per_second coverage features
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  per_second=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  features=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  printf '%-11s status %s, %s runs, %s/s, coverage %s edges, %s features, corpus %s inputs\n' \
    "$target" "$status" "${execs:-?}" "${per_second:-?}" "${coverage:-?}" \
    "${features:-?}" "$(ls "$corpus" | wc -l)"
  return $status
}
export -f fuzz_one say
export ROOT BUILD MINUTES
printf '%s\n' "${TARGETS[@]}" | xargs -P "$JOBS" -I{} bash -c 'fuzz_one {}' \
  && say "no crash, leak or hang" \
  || { say "findings in $BUILD/fuzz-findings (see each fuzz.log)"; exit 1; }
