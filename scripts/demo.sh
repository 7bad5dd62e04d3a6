#!/usr/bin/env bash
# Kiln's main job on the model that ships in the repository: compile the
# two-layer MLP in test/fixtures/mlp for the CPU, run it, print its outputs
# and how long each step took. Installs and builds what is missing first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:-$ROOT/test/fixtures/mlp/model.onnx}"
INPUT="${2:-$(dirname "$MODEL")/x.npy}"

"$ROOT/scripts/setup.sh" kiln
KILN="$ROOT/build/bin/kiln"
OUT="$ROOT/build/demo"
mkdir -p "$OUT"

now() { date +%s.%N; }
step() { printf '\n==> %s\n' "$*"; }

step "kiln compile $(basename "$(dirname "$MODEL")")/$(basename "$MODEL") --target cpu"
t0=$(now)
"$KILN" compile "$MODEL" --target cpu -o "$OUT/model.kiln"
t1=$(now)

step "kiln inspect (summary)"
"$KILN" inspect "$OUT/model.kiln" | sed -n '1,12p'

step "kiln run on $(basename "$INPUT")"
t2=$(now)
"$KILN" run "$OUT/model.kiln" --input "x=@$INPUT" --output-dir "$OUT/outputs"
t3=$(now)

step "kiln bench"
"$KILN" bench "$OUT/model.kiln" --iterations 200 --warmup 20

awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {
  printf "\n==> wall time: compile %.2f s, run %.2f s (process start to exit)\n", b - a, d - c }'
printf '    outputs written to %s\n' "$OUT/outputs"
