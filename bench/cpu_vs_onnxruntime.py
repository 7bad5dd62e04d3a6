"""Kiln's CPU target against onnxruntime's CPU execution provider, same
machine, same run, one thread each (Kiln's CPU kernels are single-threaded
today). Not a test: it prints a table and never fails on speed.

    .venv/bin/python bench/cpu_vs_onnxruntime.py [--iterations N]

Models (generated here with fixed seeds, not committed):
  mlp-shipped      test/fixtures/mlp (8x64 -> 128 -> 10)
  attention-shipped test/fixtures/attention (2x16x32, one head)
  gpt2-mlp-128     GPT-2-124M MLP block on 128 tokens:
                   [128,768] x [768,3072] + bias, GELU (erf), x [3072,768] + bias
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: onnxruntime timed the same way)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))


def gpt2_mlp(path):
    rng = np.random.default_rng(0)
    d, h, tokens = 768, 3072, 128
    w = lambda n, s: numpy_helper.from_array(
        (rng.standard_normal(s) * 0.02).astype(np.float32), n)
    inits = [w("fc.w", (d, h)), w("fc.b", (h,)), w("proj.w", (h, d)),
             w("proj.b", (d,)),
             numpy_helper.from_array(np.array(np.sqrt(2), np.float32), "r2"),
             numpy_helper.from_array(np.array(1, np.float32), "one"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    n = helper.make_node
    nodes = [n("MatMul", ["x", "fc.w"], ["a"]), n("Add", ["a", "fc.b"], ["b"]),
             n("Div", ["b", "r2"], ["c"]), n("Erf", ["c"], ["e"]),
             n("Add", ["e", "one"], ["f"]), n("Mul", ["b", "f"], ["g"]),
             n("Mul", ["g", "half"], ["gelu"]),
             n("MatMul", ["gelu", "proj.w"], ["p"]),
             n("Add", ["p", "proj.b"], ["y"])]
    graph = helper.make_graph(
        nodes, "gpt2_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [tokens, d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [tokens, d])],
        inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              path)
    return {"x": rng.standard_normal((tokens, d)).astype(np.float32)}


def kiln_p50(model, tmp, iterations):
    artifact = os.path.join(tmp, os.path.basename(model) + ".kiln")
    subprocess.run([KILN, "compile", model, "-o", artifact], check=True,
                   capture_output=True)
    out = subprocess.run([KILN, "bench", artifact, "--iterations",
                          str(iterations), "--warmup", "5"], check=True,
                         capture_output=True, text=True).stdout
    return float(re.search(r"p50 ([0-9.]+)", out).group(1))


def ort_p50(model, inputs, iterations):
    return run.ort_bench(model, inputs, 1, iterations, 5)["p50_ms"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = []
        for name in ["mlp", "attention"]:
            folder = os.path.join(ROOT, "test", "fixtures", name)
            models.append((name + "-shipped", os.path.join(folder, "model.onnx"),
                           {"x": np.load(os.path.join(folder, "x.npy"))}))
        gpt = os.path.join(tmp, "gpt2_mlp.onnx")
        models.append(("gpt2-mlp-128", gpt, gpt2_mlp(gpt)))
        print(f"{'model':<20}{'kiln p50 ms':>14}{'ort p50 ms':>14}{'kiln/ort':>10}")
        for name, path, inputs in models:
            k = kiln_p50(path, tmp, args.iterations)
            o = ort_p50(path, inputs, args.iterations)
            print(f"{name:<20}{k:>14.4f}{o:>14.4f}{k / o:>10.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
