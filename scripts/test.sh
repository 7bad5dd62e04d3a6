#!/usr/bin/env bash
# Kiln's whole test suite: lit + FileCheck (dialect, importer, passes, driver),
# GoogleTest (runtime loader, memory planner), and end-to-end numerics against
# onnxruntime. Installs and builds what is missing first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$ROOT/scripts/setup.sh"
printf '==> running the test suite (ctest)\n' >&2
cd "$ROOT/build"
ctest --output-on-failure --timeout 1200 "$@"
