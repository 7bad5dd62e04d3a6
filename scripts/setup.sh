#!/usr/bin/env bash
# Installs what Kiln needs and builds it. Safe to run again: it installs only
# what is missing and rebuilds only what changed.
#
#   scripts/setup.sh [ninja targets...]      (default: everything)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '==> %s\n' "$*" >&2; }

APT_PACKAGES=(
  cmake ninja-build ccache g++ pkg-config
  libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools lld-22
  libprotobuf-dev protobuf-compiler libabsl-dev libgtest-dev libxxhash-dev
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
  say "Debian packages: all present"
fi

# Python is for tests and tools only; it lives in a project virtualenv.
REQS="$ROOT/scripts/requirements-test.txt"
STAMP="$ROOT/.venv/.kiln-requirements"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  say "creating the Python virtualenv .venv"
  python3 -m venv "$ROOT/.venv" || {
    say "python3 -m venv failed; installing python3-venv"
    apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$ROOT/.venv"
  }
fi
if [ ! -f "$STAMP" ] || ! cmp -s "$REQS" "$STAMP"; then
  say "installing Python test dependencies into .venv"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -r "$REQS"
  cp "$REQS" "$STAMP"
else
  say "Python test dependencies: all present"
fi

if [ ! -f "$ROOT/build/build.ninja" ]; then
  say "configuring the build in build/"
  cmake -S "$ROOT" -B "$ROOT/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DLLVM_USE_LINKER=lld \
    -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ >/dev/null
fi
say "building ${*:-everything} (ninja -C build)"
start=$(date +%s)
# pipefail makes a failed build fail the script; grep's own "no line
# printed" does not.
ninja -C "$ROOT/build" "$@" | { grep -v '^\[' || true; }
say "build done in $(( $(date +%s) - start )) s"
