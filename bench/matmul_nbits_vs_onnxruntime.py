"""4-bit weights (com.microsoft MatMulNBits) on the CPU: Kiln against
onnxruntime's CPU execution provider, same machine, same run, same inputs,
at one thread and at every core this process may use. Not a test: it
prints a table and never fails on speed.

The model: a GPT-2-sized MLP (768 -> 3,072 -> ReLU -> 768, random weights)
quantized by onnxruntime's own MatMulNBitsQuantizer (4 bits, blocks of 32,
asymmetric), at 1 row (a decode step), 16 and 128 rows (a prefill); the
f32 model it was made from is timed alongside for reference.

    .venv/bin/python bench/matmul_nbits_vs_onnxruntime.py [--iterations 50]
        [--rows 1,16,128]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "test", "e2e"))
import run  # noqa: E402  (bench/run.py: both engines timed the same way)
from test_matmul_nbits import mlp  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--rows", default="1,16,128")
    args = parser.parse_args()
    from onnxruntime.quantization.matmul_nbits_quantizer import \
        MatMulNBitsQuantizer
    cores = len(os.sched_getaffinity(0))
    print(f"| rows | weights | threads | Kiln p50 ms | onnxruntime p50 ms "
          f"| Kiln / onnxruntime |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in [int(r) for r in args.rows.split(",")]:
            source = os.path.join(tmp, f"f32-{rows}.onnx")
            mlp(source, hidden=768, inner=3072, rows=rows)
            quantizer = MatMulNBitsQuantizer(onnx.load(source), block_size=32,
                                             is_symmetric=False)
            quantizer.process()
            quantized = os.path.join(tmp, f"q4-{rows}.onnx")
            onnx.save(quantizer.model.model, quantized)
            for kind, model in [("4-bit", quantized), ("f32", source)]:
                artifact = model + ".kiln"
                subprocess.run([run.KILN, "compile", model, "-o", artifact],
                               check=True, capture_output=True)
                inputs = run.inputs_for(model)
                for threads in sorted({1, cores}):
                    ours = run.kiln_bench(artifact, inputs, threads,
                                          args.iterations, 5, tmp)["p50_ms"]
                    theirs = run.ort_bench(model, inputs, threads,
                                           args.iterations, 5)["p50_ms"]
                    print(f"| {rows} | {kind} | {threads} | {ours:.3f} | "
                          f"{theirs:.3f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
    main()
