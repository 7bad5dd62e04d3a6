"""Kiln's GEMM kernels against cuBLAS (through PyTorch) on a GPU machine.
Not a test: it prints a table.

Here (no GPU needed): writes one MatMul model per shape, compiles each for
the GPU and packs them with kiln-runner into a folder:

    .venv/bin/python bench/gpu_gemm.py prepare OUT [--target cuda:sm_90a]

On the GPU machine (python3 with numpy and torch):

    python3 OUT/gpu_gemm.py run

For each shape (y = x @ W, fp32, W a weight) it times kiln-runner's kernel
(CUDA events, `--profile`) and torch.matmul in the same process family, with
TF32 off (the same arithmetic as Kiln's fp32 SIMT kernel) and with bf16
(what tensor cores give, the figure the tensor-core issue aims at), and
prints ms, TFLOP/s and the ratios.
"""
import argparse
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (M, N, K): GPT-2-124M's projections at 128 tokens, a decode step (M=1),
# and a large square GEMM.
SHAPES = [(128, 768, 768), (128, 3072, 768), (128, 768, 3072),
          (128, 2304, 768), (1, 3072, 768), (1024, 1024, 1024)]


def prepare(out, target, kiln):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    os.makedirs(os.path.join(out, "bin"), exist_ok=True)
    shutil.copy(os.path.join(ROOT, "build", "bin", "kiln-runner"),
                os.path.join(out, "bin", "kiln-runner"))
    shutil.copy(os.path.abspath(__file__), os.path.join(out, "gpu_gemm.py"))
    rng = np.random.default_rng(0)
    for m, n, k in SHAPES:
        name = f"gemm_{m}x{n}x{k}"
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
            [numpy_helper.from_array(w, "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx_path = os.path.join(out, "models", name + ".onnx")
        onnx.save(model, onnx_path)
        subprocess.run([kiln, "compile", onnx_path, "--target", target, "-o",
                        os.path.join(out, "models", name + ".kiln")], check=True)
        os.remove(onnx_path)
        np.save(os.path.join(out, "models", name + ".x.npy"),
                rng.standard_normal((m, k), dtype=np.float32))
    print(f"prepared {out} for {target}")


def run(folder):
    import torch
    runner = os.path.join(folder, "bin", "kiln-runner")
    print(f"device: {torch.cuda.get_device_name(0)}", flush=True)
    print("| M x N x K | kiln fp32 SIMT ms | cuBLAS fp32 ms | cuBLAS bf16 ms "
          "| kiln TFLOP/s | kiln / cuBLAS fp32 | kiln / cuBLAS bf16 |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for m, n, k in SHAPES:
        name = f"gemm_{m}x{n}x{k}"
        base = os.path.join(folder, "models", name)
        r = subprocess.run([runner, base + ".kiln", "--device", "cuda:0",
                            "--input", f"x=@{base}.x.npy", "--profile", "50"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode:
            print(f"| {m} x {n} x {k} | error: {r.stderr.strip()[-200:]} |")
            continue
        kiln_ms = sum(float(line.split()[3]) for line in r.stdout.splitlines()
                      if line.startswith("kernel "))

        def torch_ms(dtype):
            torch.backends.cuda.matmul.allow_tf32 = False
            x = torch.randn(m, k, device="cuda", dtype=dtype)
            w = torch.randn(k, n, device="cuda", dtype=dtype)
            for _ in range(5):
                x @ w
            start, end = (torch.cuda.Event(enable_timing=True),
                          torch.cuda.Event(enable_timing=True))
            start.record()
            for _ in range(50):
                x @ w
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 50

        fp32, bf16 = torch_ms(torch.float32), torch_ms(torch.bfloat16)
        tflops = 2 * m * n * k / (kiln_ms * 1e-3) / 1e12
        print(f"| {m} x {n} x {k} | {kiln_ms:.4f} | {fp32:.4f} | {bf16:.4f} "
              f"| {tflops:.2f} | {kiln_ms / fp32:.1f}x | {kiln_ms / bf16:.1f}x |",
              flush=True)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out")
    p.add_argument("--target", default="cuda:sm_90a")
    p.add_argument("--kiln", default=os.path.join(ROOT, "build", "bin", "kiln"))
    sub.add_parser("run")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.target, args.kiln)
    else:
        run(os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    main()
