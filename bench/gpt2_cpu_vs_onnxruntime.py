"""GPT-2-124M prefill on the CPU: Kiln's CPU target against onnxruntime's
CPU execution provider, same machine, same run, one thread each (Kiln's CPU
kernels are single-threaded today). Not a test: it prints the figures and
the ratio and never fails on speed.

The model is Hugging Face's GPT-2 configuration (12 layers, 768 wide, 12
heads, 50,257-token vocabulary) with random weights (seed 0), exported with
torch.onnx.export (opset 17, batch 1, 128 tokens) at benchmark time, not
committed. Latency is the median of --iterations runs after 3 warm-ups.
With --dynamic the export has a symbolic sequence dim and Kiln compiles it
with `--dim sequence=1..TOKENS` (one artifact for every prompt length up to
TOKENS), run at TOKENS tokens.
Needs the export tools (scripts/requirements-export.txt):

    python3 -m venv .venv-export && .venv-export/bin/pip install -r scripts/requirements-export.txt
    .venv-export/bin/python bench/gpt2_cpu_vs_onnxruntime.py [--iterations 10] [--tokens 128] [--dynamic]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))


class Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids, use_cache=False, return_dict=False)[0]


def export(path, tokens, dynamic):
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    ids = torch.randint(0, 50257, (1, tokens), generator=torch.Generator().manual_seed(0))
    axes = ({"input_ids": {1: "sequence"}, "logits": {1: "sequence"}}
            if dynamic else None)
    torch.onnx.export(Logits(model), (ids,), path, input_names=["input_ids"],
                      output_names=["logits"], opset_version=17,
                      dynamic_axes=axes, dynamo=False)
    return ids.numpy()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--dynamic", action="store_true",
                        help="symbolic sequence dim, compiled for 1..tokens")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "gpt2.onnx")
        ids = export(model, args.tokens, args.dynamic)
        ids_path = os.path.join(tmp, "ids.npy")
        np.save(ids_path, ids)

        artifact = os.path.join(tmp, "gpt2.kiln")
        start = time.perf_counter()
        dims = (["--dim", f"sequence=1..{args.tokens}"] if args.dynamic
                else [])
        subprocess.run([KILN, "compile", model, "-o", artifact, *dims],
                       check=True, capture_output=True)
        compile_s = time.perf_counter() - start
        out_dir = os.path.join(tmp, "out")
        subprocess.run([KILN, "run", artifact, "--input", f"input_ids=@{ids_path}",
                        "--output-dir", out_dir], check=True, capture_output=True)
        bench = subprocess.run(
            [KILN, "bench", artifact, "--input", f"input_ids=@{ids_path}",
             "--iterations", str(args.iterations), "--warmup", "3"],
            check=True, capture_output=True, text=True).stdout
        kiln_ms = float(re.search(r"p50 ([0-9.]+)", bench).group(1))

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model, options,
                                       providers=["CPUExecutionProvider"])
        want = session.run(None, {"input_ids": ids})[0]
        for _ in range(3):
            session.run(None, {"input_ids": ids})
        times = []
        for _ in range(args.iterations):
            start = time.perf_counter()
            session.run(None, {"input_ids": ids})
            times.append((time.perf_counter() - start) * 1e3)
        ort_ms = float(np.median(times))
        got = np.load(os.path.join(out_dir, "logits.npy"))
        error = float(np.max(np.abs(got - want)))

    shape = (f"symbolic sequence 1..{args.tokens}" if args.dynamic
             else "static shapes")
    print(f"GPT-2-124M prefill, {args.tokens} tokens, batch 1, {shape}, "
          f"1 thread each, median of {args.iterations} runs")
    print(f"  kiln        {kiln_ms:10.1f} ms   (compile {compile_s:.1f} s; "
          f"max |logit error| vs onnxruntime {error:.2e})")
    print(f"  onnxruntime {ort_ms:10.1f} ms")
    print(f"  kiln/onnxruntime = {kiln_ms / ort_ms:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
