"""nn.LSTM and nn.GRU (2 layers, bidirectional, batch-first), exported by
torch.onnx (TorchScript exporter), compiled by Kiln for the CPU and timed
with `kiln bench`, against onnxruntime on the same file in the same run
(one thread each, then all cores). Median milliseconds per run.

    .venv/bin/python bench/recurrent_vs_onnxruntime.py [--seq 64] [--hidden 256]
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.path.join(ROOT, "build", "bin", "kiln")


def ort_median(path, feeds, threads, iterations):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for _ in range(5):
        session.run(None, feeds)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def kiln_median(artifact, x_path, threads, iterations):
    out = subprocess.run([KILN, "bench", artifact, "--input", f"x=@{x_path}",
                          "--iterations", str(iterations), "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    match = re.search(r"p50 ([0-9.]+)", out)
    if not match:
        sys.exit("cannot read kiln bench's median:\n" + out)
    return float(match.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    threads = os.cpu_count()
    print(f"| model (seq {args.seq}, batch {args.batch}, hidden {args.hidden}) "
          f"| Kiln 1t | ORT 1t | ratio | Kiln {threads}t | ORT {threads}t | ratio |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ["LSTM", "GRU"]:
            torch.manual_seed(0)
            layer = getattr(torch.nn, kind)(args.hidden, args.hidden, num_layers=2,
                                            batch_first=True, bidirectional=True).eval()
            x = torch.randn(args.batch, args.seq, args.hidden)
            path = os.path.join(tmp, kind + ".onnx")
            with torch.no_grad():
                torch.onnx.export(layer, (x,), path, input_names=["x"],
                                  output_names=["y"], opset_version=14, dynamo=False)
            artifact = os.path.join(tmp, kind + ".kiln")
            subprocess.run([KILN, "compile", path, "-o", artifact], check=True,
                           capture_output=True)
            x_path = os.path.join(tmp, "x.npy")
            np.save(x_path, x.numpy())
            feeds = {"x": x.numpy()}
            row = [kind]
            for t in (1, threads):
                k = kiln_median(artifact, x_path, t, args.iterations)
                o = ort_median(path, feeds, t, args.iterations)
                row += [f"{k:.2f}", f"{o:.2f}", f"{k / o:.2f}x"]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
