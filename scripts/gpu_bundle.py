"""Builds the GPU test bundle: everything a GPU machine with the NVIDIA driver,
Python, numpy (and nothing of Kiln's toolchain, no network) needs to check
Kiln's GPU kernels and time them.

    .venv/bin/python scripts/gpu_bundle.py OUT_DIR [--target cuda:sm_80,sm_90a]

OUT_DIR gets:
  bin/kiln-runner          runs an artifact with the runtime library alone
  cases/NAME/              model.kiln, in_*.npy inputs, want_*.npy outputs
                           (onnxruntime's), case.json
  run.py                   the runner (see scripts/gpu_bundle_run.py)
and OUT_DIR.tar.gz (at most 60 MB). It prints the glibc bin/kiln-runner
needs, read from the binary (scripts/glibc_needed.py). On the GPU machine:

    tar xzf bundle.tar.gz && python3 bundle/run.py
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
from test_gemm_mma_sync import build as gemm_case  # noqa: E402
from test_gemm_wgmma import build as wgmma_case  # noqa: E402
from test_ops import CASES  # noqa: E402
from test_attention_layouts import BLOCKS, attention_block  # noqa: E402
from test_flash_attention import CASES as FLASH_CASES  # noqa: E402
from test_flash_attention import build as flash_case  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from glibc_needed import describe  # noqa: E402

LIMIT_BYTES = 60 * 1024 * 1024


# Compile flags per case (default: none).
FLAGS = {"bert_dynamic_2x11": ["--dim", "batch=1..2", "--dim",
                               "sequence=1..16"]}
# Cases compiled for one architecture alone (sm_90a: gemm-wgmma with TMA);
# run.py skips them on other GPUs.
TARGETS = {f"hopper_{kind}_bf16": "cuda:sm_90a"
           for kind in ("aligned", "edges", "batched", "gelu")}


def bert_inputs(batch, seq, seed):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[0, seq * 3 // 4:] = 0
    return {"input_ids": rng.integers(0, 256, (batch, seq), dtype=np.int64),
            "attention_mask": mask,
            "token_type_ids": rng.integers(0, 2, (batch, seq), dtype=np.int64)}


# Input sets of other shapes that run.py cycles through with the case's
# (kiln-runner --cycle): the CUDA graph cache against recapturing every
# run and against launching without graphs.
CYCLES = {"bert_dynamic_2x11": [bert_inputs(1, 5, 1), bert_inputs(2, 16, 2),
                                bert_inputs(1, 11, 3)]}


def cases():
    for name in ("mlp", "attention"):
        folder = os.path.join(ROOT, "test", "fixtures", name)
        yield ("fixture_" + name, onnx.load(os.path.join(folder, "model.onnx")),
               {"x": np.load(os.path.join(folder, "x.npy"))}, True)
    # Symbolic dims on the GPU: one artifact for batch 1..2 and sequence
    # 1..16, run at 2x11 (kernels take the sizes as arguments).
    folder = os.path.join(ROOT, "test", "fixtures", "transformers", "bert")
    yield ("bert_dynamic_2x11",
           onnx.load(os.path.join(folder, "model_dynamic.onnx")),
           bert_inputs(2, 11, 0), False)
    for name in sorted(CASES):
        model, inputs = CASES[name]
        yield "op_" + name, model, inputs, False
    # The tensor-core GEMM (gemm-mma-sync) on every shape the e2e tests give
    # it, and the transformer fixtures, at --precision (PRECISION below).
    for kind in TENSOR_CORE_KINDS:
        graph, inputs, _ = gemm_case(kind, np.random.default_rng(len(kind)))
        model = onnx.helper.make_model(
            graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
        for precision in ("bf16", "fp16"):
            yield f"tc_{kind}_{precision}", model, inputs, kind == "large"
    for kind in ("aligned", "edges", "batched", "gelu"):
        graph, inputs, _, _ = wgmma_case(kind, np.random.default_rng(7))
        model = onnx.helper.make_model(
            graph, opset_imports=[onnx.helper.make_opsetid("", 20)])
        yield f"hopper_{kind}_bf16", model, inputs, kind == "aligned"
    # Flash attention: every configuration the e2e tests give it, and two
    # timed ones (prefill at 1024 tokens, split-KV decode with GQA against
    # 2048 cached keys).
    scratch = tempfile.mkdtemp()
    flash = dict(FLASH_CASES)
    flash["bench_prefill_d64"] = dict(shape=(1, 8, 8, 1024, 0, 1024, 64),
                                      causal=True)
    flash["bench_decode_gqa8_d64"] = dict(shape=(1, 32, 4, 1, 2047, 1, 64),
                                          causal=True)
    FLASH_CASES.update(flash)
    for name in sorted(flash):
        path = os.path.join(scratch, name + ".onnx")
        inputs, _ = flash_case(name, path)
        yield (f"flash_{name}_bf16", onnx.load(path), inputs,
               name.startswith("bench_"))
    for name in sorted(BLOCKS):
        path = os.path.join(scratch, name + ".onnx")
        x, _ = attention_block(name, path)
        yield f"attention_block_{name}_bf16", onnx.load(path), {"x": x}, False
    shutil.rmtree(scratch)
    for name in ("gpt2", "bert", "llama"):
        folder = os.path.join(ROOT, "test", "fixtures", "transformers", name)
        inputs = {os.path.basename(p)[3:-4]: np.load(os.path.join(folder, p))
                  for p in sorted(os.listdir(folder)) if p.startswith("in_")}
        yield (f"{name}_bf16", onnx.load(os.path.join(folder, "model.onnx")),
               inputs, False)


TENSOR_CORE_KINDS = ["aligned", "edges", "trans_a", "trans_b", "batched",
                     "broadcast", "heads", "unaligned_n", "large"]


def precision_of(name):
    """The --precision a case is compiled with (its name says it)."""
    for precision in ("bf16", "fp16"):
        if name.endswith("_" + precision):
            return precision
    return "fp32"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--target", default="cuda:sm_80,sm_90a")
    parser.add_argument("--kiln", default=os.path.join(ROOT, "build", "bin", "kiln"))
    parser.add_argument("--only", nargs="*", help="case names to include")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "bin"))
    runner = os.path.join(out, "bin", "kiln-runner")
    shutil.copy2(os.path.join(os.path.dirname(args.kiln), "kiln-runner"), runner)
    print("glibc: " + describe(runner).replace(out + os.sep, ""), flush=True)
    shutil.copy2(os.path.join(ROOT, "scripts", "gpu_bundle_run.py"),
                 os.path.join(out, "run.py"))
    for name, model, inputs, bench in cases():
        if args.only and name not in args.only:
            continue
        folder = os.path.join(out, "cases", name)
        os.makedirs(folder)
        onnx.save(model, os.path.join(folder, "model.onnx"))
        subprocess.run([args.kiln, "compile", os.path.join(folder, "model.onnx"),
                        "--target", TARGETS.get(name, args.target),
                        "--embed-kernel-ir",
                        "-o", os.path.join(folder, "model.kiln"),
                        "--precision", precision_of(name),
                        *FLAGS.get(name, [])],
                       check=True, capture_output=True)
        session = ort.InferenceSession(os.path.join(folder, "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        for key, value in inputs.items():
            np.save(os.path.join(folder, f"in_{key}.npy"), value)
        for key, value in zip(names, session.run(names, inputs)):
            np.save(os.path.join(folder, f"want_{key}.npy"), value)
        os.remove(os.path.join(folder, "model.onnx"))
        cycle = []
        for i, extra in enumerate(CYCLES.get(name, []), 1):
            cycle.append(f"cycle{i}")
            os.makedirs(os.path.join(folder, cycle[-1]))
            for key, value in extra.items():
                np.save(os.path.join(folder, cycle[-1], f"in_{key}.npy"), value)
        with open(os.path.join(folder, "case.json"), "w") as f:
            json.dump({"inputs": sorted(inputs), "outputs": names,
                       "bench": bench, "cycle": cycle,
                       "precision": precision_of(name),
                       "requires": "sm_90a" if name in TARGETS else ""}, f)
    archive = out + ".tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(out, arcname=os.path.basename(out))
    size = os.path.getsize(archive)
    print(f"bundle: {out} ({size / 1e6:.1f} MB as {archive})")
    if size > LIMIT_BYTES:
        sys.exit(f"the bundle is {size / 1e6:.1f} MB, over the 60 MB limit")


if __name__ == "__main__":
    main()
