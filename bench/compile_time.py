"""Compile time, peak memory and artifact size of `kiln compile` on a
GPT-2-124M-sized export (bench/make_gpt2.py: random weights, opset 20, 128
tokens, made at benchmark time, not committed), for `--target cpu` and
`--target cuda:sm_80,sm_90a`. Not a test: it prints the figures and the
goals of issue 10 next to them and never fails on them.

    .venv/bin/python bench/compile_time.py [--layers 12] [--runs 1]
        [--targets cpu,cuda:sm_80,sm_90a] [--model existing.onnx]

"weights" is the model's parameter bytes counted once: an initializer that
is the transpose (or a copy) of another one, as the exporter's copy of the
tied embedding for the lm_head is, counts once. Peak RSS is the compiler
process's own (wait4's ru_maxrss, which includes the ptxas children it
waited for only if they were larger). Set KILN_BIN to measure another build.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))
sys.path.insert(0, HERE)
import make_gpt2  # noqa: E402


def unique_weight_bytes(path):
    """Parameter bytes, each distinct tensor once (copies and transposes of
    another initializer are not counted again)."""
    model = onnx.load(path)
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    seen, total = [], 0
    for a in arrays:
        dup = False
        for b in seen:
            if a.size != b.size or a.dtype != b.dtype:
                continue
            if a.shape == b.shape and np.array_equal(a, b):
                dup = True
            elif a.ndim == 2 and a.shape == b.shape[::-1] and np.array_equal(a, b.T):
                dup = True
            if dup:
                break
        if not dup:
            seen.append(a)
            total += a.nbytes
    return total, sum(a.nbytes for a in arrays)


def measure(model, out, target, extra):
    """Runs one compile in a child Python that reports the compiler's own
    peak RSS (ru_maxrss of the waited-for kiln process)."""
    code = (
        "import os,sys,time,subprocess\n"
        "t=time.perf_counter()\n"
        "p=subprocess.Popen(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.PIPE,text=True)\n"
        "err=p.stderr.read()\n"
        "_,status,ru=os.wait4(p.pid,0)\n"
        "print(time.perf_counter()-t, ru.ru_maxrss, os.waitstatus_to_exitcode(status))\n"
        "sys.stderr.write(err)\n")
    cmd = [KILN, "compile", model, "-o", out, "--target", target, *extra]
    proc = subprocess.run([sys.executable, "-c", code, *cmd],
                          capture_output=True, text=True)
    wall, rss_kb, rc = proc.stdout.split()
    if int(rc) != 0:
        sys.exit(f"kiln compile failed ({rc}):\n{proc.stderr}")
    return float(wall), int(rss_kb) * 1024, proc.stderr.strip()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--targets", default="cpu;cuda:sm_80,sm_90a",
                        help="targets separated by ';'")
    parser.add_argument("--model", help="an existing .onnx instead of a fresh one")
    parser.add_argument("--extra", default="", help="more kiln compile flags")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if not model:
            model = os.path.join(tmp, "gpt2.onnx")
            onnx.save(make_gpt2.build(args.layers, 768, 12, 50257, 128, 20), model)
        weights, stored = unique_weight_bytes(model)
        print(f"model: {model}  ({os.path.getsize(model) / 1e6:.0f} MB file, "
              f"{stored / 1e6:.0f} MB of initializers, {weights / 1e6:.0f} MB "
              f"of distinct weights)")
        print(f"kiln: {KILN}\n")
        print("| target | compile (s) | peak RSS (MB) | artifact (MB) | "
              "artifact / weights | kernels |")
        print("| --- | --- | --- | --- | --- | --- |")
        for target in args.targets.split(";"):
            out = os.path.join(tmp, "model.kiln")
            times, rss = [], 0
            for _ in range(args.runs):
                wall, peak, log = measure(model, out, target, args.extra.split())
                times.append(wall)
                rss = max(rss, peak)
            size = os.path.getsize(out)
            kernels = re.search(r"\((\d+) kernels", log)
            print(f"| {target} | {min(times):.1f} | {rss / 1e6:.0f} | "
                  f"{size / 1e6:.0f} | {size / weights:.3f} | "
                  f"{kernels.group(1) if kernels else '?'} |")
            print(f"|   {log.splitlines()[-1] if log else ''} |||||")
        print(f"\ngoals (issue 10): compile <= 10 s per target on a 2-core "
              f"machine, peak RSS <= {(weights + 1e9) / 1e6:.0f} MB "
              f"(weights + 1 GB), artifact <= {weights * 1.02 / 1e6:.0f} MB "
              f"(weights + 2%)")


if __name__ == "__main__":
    main()
