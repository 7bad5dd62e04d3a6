#!/usr/bin/env bash
# Kiln's main job on the models that ship in the repository, with the time
# each step took. Installs and builds what is missing first.
#  1. A checkpoint in, text out: the LLaMA-architecture checkpoint folder in
#     test/fixtures/checkpoints/tiny-llama (2 MB, a tokenizer trained for
#     it, weights trained to continue one short text) compiled for the CPU
#     and for cuda, then text generated from a text prompt on the CPU and
#     under the GPU-kernel simulator (the cuda kernels run on the CPU).
#  2. An ONNX model: the two-layer MLP in test/fixtures/mlp, compiled, run
#     and benchmarked on the CPU.
#
#   scripts/demo.sh [CHECKPOINT_DIR] [PROMPT]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKPOINT="${1:-$ROOT/test/fixtures/checkpoints/tiny-llama}"
PROMPT="${2:-Once upon a time}"
MODEL="$ROOT/test/fixtures/mlp/model.onnx"
INPUT="$(dirname "$MODEL")/x.npy"

"$ROOT/scripts/setup.sh" kiln
KILN="$ROOT/build/bin/kiln"
OUT="$ROOT/build/demo"
mkdir -p "$OUT"

now() { date +%s.%N; }
step() { printf '\n==> %s\n' "$*"; }

step "kiln compile $(basename "$CHECKPOINT")/ --target cpu --max-seq-len 128"
"$KILN" compile "$CHECKPOINT" --target cpu --max-seq-len 128 -o "$OUT/llm-cpu.kiln"

step "kiln generate --prompt \"$PROMPT\" --max-new-tokens 48 (cpu)"
"$KILN" generate "$OUT/llm-cpu.kiln" --prompt "$PROMPT" --max-new-tokens 48

step "kiln compile $(basename "$CHECKPOINT")/ --target cuda:sm_80,sm_90a --precision bf16 (fixed dims)"
"$KILN" compile "$CHECKPOINT" --target cuda:sm_80,sm_90a --precision bf16 \
  --embed-kernel-ir --dim batch=1 --dim sequence=24 -o "$OUT/llm-cuda.kiln"

step "kiln generate --device sim --max-new-tokens 12 (the cuda kernels, simulated)"
"$KILN" generate "$OUT/llm-cuda.kiln" --prompt "$PROMPT" --max-new-tokens 12 \
  --device sim

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
