"""GPT-2 prefill on the CPU with attention as one kernel (`kiln.attention`
raised from the exporter's pieces and run by `cpu-flash-attention`: an
online softmax over key blocks, no [seq, seq] buffer) against the same
model compiled with `--raise-attention off` (the exporter's MatMul, Div,
Add, Softmax, MatMul as separate kernels), and onnxruntime's CPU provider
at one thread, all in the same run on the same inputs. Not a test: it
prints the figures and never fails on speed.

    .venv/bin/python bench/cpu_attention.py [--layers 2] [--tokens 128 512 1024]
        [--iterations 10]

The model comes from bench/make_gpt2.py (GPT-2-124M's width and heads,
random weights, a 512-token vocabulary so that the LM head does not hide
the layers). Latency is `kiln bench`'s median (p50) after 3 warm-ups; the
attention column is the flash kernels' time from `kiln bench`'s per-kernel
table; for the decomposed form it is derived (the total's difference plus
the flash time: every other kernel is the same in both artifacts).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))


def kiln(*args):
    return subprocess.run([KILN, *args], check=True, capture_output=True,
                          text=True).stdout


def flash_kernels(artifact):
    """The names of the kernels whose strategy computes attention whole."""
    info = json.loads(kiln("inspect", artifact, "--json"))
    return {k["name"] for k in info["kernels"] if "attention" in k["strategy"]}


def bench(artifact, inputs, iterations):
    out = kiln("bench", artifact, "--iterations", str(iterations),
               "--warmup", "3", *inputs)
    p50 = float(re.search(r"p50 ([0-9.]+)", out).group(1))
    kernels = {}
    for line in out.splitlines():
        m = re.match(r"\s+(\S+)\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)%", line)
        if m and m.group(1) != "total":
            kernels[m.group(1)] = float(m.group(3))
    return p50, kernels


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    print(f"GPT-2-124M-wide, {args.layers} layers, vocabulary 512, batch 1; "
          f"kiln cpu, one thread; p50 of {args.iterations} runs")
    print("| tokens | Kiln, attention raised | of which attention | "
          "Kiln, --raise-attention off | of which attention (derived) | "
          "onnxruntime 1 thread | raised / off | raised / ort |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for tokens in args.tokens:
            model = os.path.join(folder, f"gpt2_{tokens}.onnx")
            subprocess.run([sys.executable,
                            os.path.join(ROOT, "bench", "make_gpt2.py"), model,
                            "--layers", str(args.layers), "--vocab", "512",
                            "--tokens", str(tokens)], check=True)
            ids = np.random.default_rng(0).integers(
                0, 512, (1, tokens)).astype(np.int64)
            ids_path = os.path.join(folder, "ids.npy")
            np.save(ids_path, ids)
            session = ort.InferenceSession(
                model, providers=["CPUExecutionProvider"],
                sess_options=_one_thread())
            name = session.get_inputs()[0].name
            inputs = ["--input", f"{name}=@{ids_path}"]
            results = {}
            for mode in ("on", "off"):
                artifact = os.path.join(folder, f"gpt2_{tokens}_{mode}.kiln")
                kiln("compile", model, "--raise-attention", mode, "-o", artifact)
                p50, kernels = bench(artifact, inputs, args.iterations)
                names = flash_kernels(artifact)
                attn = sum(ms for k, ms in kernels.items() if k in names)
                results[mode] = (p50, attn)
            times = []
            for _ in range(3):
                session.run(None, {name: ids})
            for _ in range(args.iterations):
                start = time.perf_counter()
                session.run(None, {name: ids})
                times.append((time.perf_counter() - start) * 1e3)
            ort_ms = statistics.median(times)
            on, off = results["on"], results["off"]
            # The rest of the model is the same kernels either way, so the
            # decomposed attention costs what the totals differ by, plus
            # the flash kernel's time.
            attn_off = f"~{off[0] - on[0] + on[1]:.1f} ms"
            print(f"| {tokens} | {on[0]:.1f} ms | {on[1]:.1f} ms | "
                  f"{off[0]:.1f} ms | {attn_off} | {ort_ms:.1f} ms | "
                  f"{on[0] / off[0]:.2f} | {on[0] / ort_ms:.2f} |", flush=True)


def _one_thread():
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return options


if __name__ == "__main__":
    main()
