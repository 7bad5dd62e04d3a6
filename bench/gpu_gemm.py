"""Kiln's GEMM kernels against cuBLAS (torch.matmul) on a GPU machine, in
fp16 and bf16. Not a test: it prints a table.

Here (no GPU needed): writes one MatMul model per shape (x @ w, both
inputs, so no artifact holds GB of weights), compiles each with
`--precision fp16` and `--precision bf16`, and packs them with kiln-runner
into a folder (a few MB):

    .venv/bin/python bench/gpu_gemm.py prepare OUT [--target cuda:sm_90a]

On the GPU machine (python3 with numpy and torch):

    python3 OUT/gpu_gemm.py run [--only M,N,K ...]

For each shape and precision it makes the inputs there, times kiln-runner's
kernels (CUDA events, `--profile 20`) and torch.matmul on operands of that
precision in the same run, and prints a table: the GEMM kernel's ms (the
slowest launch; the conversions of x and w to the operand type and of the
product back to f32 are separate kernels, in "all ms"), its TFLOP/s, and
the ratio to cuBLAS (above 1: Kiln is slower).
"""
import argparse
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRECISIONS = ["bf16", "fp16"]


def shapes():
    """(M, N, K): two squares; the projections of GPT-2-124M (d 768),
    GPT-2-1.5B (d 1600) and a LLaMA-3-8B layer (d 4096, GQA kv 1024, MLP
    14336) at M = 1 (decode), 16, 128 and 2048 tokens."""
    result = [(4096, 4096, 4096), (8192, 8192, 8192)]
    layers = {
        "gpt2-124m": [(2304, 768), (768, 768), (3072, 768), (768, 3072)],
        "gpt2-1.5b": [(4800, 1600), (1600, 1600), (6400, 1600), (1600, 6400)],
        "llama3-8b": [(4096, 4096), (1024, 4096), (14336, 4096), (4096, 14336)],
    }
    for projections in layers.values():
        for m in (1, 16, 128, 2048):
            result += [(m, n, k) for n, k in projections]
    return result


def prepare(out, target, kiln):
    import onnx
    from onnx import TensorProto, helper
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    os.makedirs(os.path.join(out, "bin"), exist_ok=True)
    shutil.copy(os.path.join(ROOT, "build", "bin", "kiln-runner"),
                os.path.join(out, "bin", "kiln-runner"))
    shutil.copy(os.path.abspath(__file__), os.path.join(out, "gpu_gemm.py"))
    for m, n, k in shapes():
        name = f"gemm_{m}x{n}x{k}"
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k]),
             helper.make_tensor_value_info("w", TensorProto.FLOAT, [k, n])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx_path = os.path.join(out, "models", name + ".onnx")
        onnx.save(model, onnx_path)
        for precision in PRECISIONS:
            subprocess.run([kiln, "compile", onnx_path, "--target", target,
                            "--precision", precision, "-o",
                            os.path.join(out, "models",
                                         f"{name}.{precision}.kiln")],
                           check=True, capture_output=True)
        os.remove(onnx_path)
    print(f"prepared {out} for {target}: {len(shapes())} shapes x "
          f"{len(PRECISIONS)} precisions")


def run(folder, only):
    import numpy as np
    import torch
    runner = os.path.join(folder, "bin", "kiln-runner")
    print(f"device: {torch.cuda.get_device_name(0)}", flush=True)
    print("| M x N x K | precision | kiln GEMM ms | kiln all ms | cuBLAS ms "
          "| kiln TFLOP/s | cuBLAS TFLOP/s | kiln / cuBLAS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    rng = np.random.default_rng(0)
    for m, n, k in shapes():
        if only and f"{m},{n},{k}" not in only:
            continue
        name = f"gemm_{m}x{n}x{k}"
        base = os.path.join(folder, "models", name)
        np.save(base + ".x.npy", rng.standard_normal((m, k), dtype=np.float32))
        np.save(base + ".w.npy",
                (rng.standard_normal((k, n), dtype=np.float32) / np.sqrt(k)))
        for precision in PRECISIONS:
            flops = 2 * m * n * k
            r = subprocess.run([runner, f"{base}.{precision}.kiln", "--device",
                                "cuda:0", "--input", f"x=@{base}.x.npy",
                                "--input", f"w=@{base}.w.npy", "--profile", "20"],
                               capture_output=True, text=True, timeout=300)
            if r.returncode:
                print(f"| {m} x {n} x {k} | {precision} | error: "
                      f"{r.stderr.strip()[-200:]} |", flush=True)
                continue
            times = [float(line.split()[3]) for line in r.stdout.splitlines()
                     if line.startswith("kernel ")]
            gemm_ms, all_ms = max(times), sum(times)
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            x = torch.randn(m, k, device="cuda", dtype=dtype)
            w = torch.randn(k, n, device="cuda", dtype=dtype)
            for _ in range(5):
                x @ w
            start, end = (torch.cuda.Event(enable_timing=True),
                          torch.cuda.Event(enable_timing=True))
            start.record()
            for _ in range(20):
                x @ w
            end.record()
            torch.cuda.synchronize()
            cublas_ms = start.elapsed_time(end) / 20
            print(f"| {m} x {n} x {k} | {precision} | {gemm_ms:.4f} | "
                  f"{all_ms:.4f} | {cublas_ms:.4f} | "
                  f"{flops / gemm_ms / 1e9:.1f} | {flops / cublas_ms / 1e9:.1f} | "
                  f"{gemm_ms / cublas_ms:.2f}x |", flush=True)
        for suffix in (".x.npy", ".w.npy"):
            os.remove(base + suffix)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out")
    p.add_argument("--target", default="cuda:sm_90a")
    p.add_argument("--kiln", default=os.path.join(ROOT, "build", "bin", "kiln"))
    r = sub.add_parser("run")
    r.add_argument("--only", nargs="*", help="shapes as M,N,K")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.target, args.kiln)
    else:
        run(os.path.dirname(os.path.abspath(__file__)), args.only)


if __name__ == "__main__":
    main()
