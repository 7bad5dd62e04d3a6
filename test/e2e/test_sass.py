"""The machine code of every GPU kernel strategy, on each architecture, and
every configuration GPU strategy selection chooses run under the simulator.

SASS: the fixtures are compiled for cuda:sm_80,sm_90a, each architecture's
cubin section is cut from the artifact and disassembled with cuobjdump
(PyPI's nvidia-cuda-cuobjdump and -nvdisasm), and each kernel's SASS is
checked for what its strategy and configuration promise: shared-memory
staging between barriers for gemm-simt, a shuffle butterfly of log2(warp)
steps for row-reduce, 128-bit global loads and stores for elementwise,
128-bit loads and a shuffle butterfly for gemm-small-m, a butterfly per
row reduction for row-fused.
"""
import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import ROOT, assert_matches, kiln

needs_ptxas = pytest.mark.skipif(
    not (shutil.which("ptxas") or os.path.exists("/usr/local/cuda/bin/ptxas")),
    reason="no CUDA toolkit (ptxas)")


def cuda_tool(name):
    """cuobjdump or nvdisasm: from the PyPI wheels in this virtualenv."""
    found = glob.glob(os.path.join(sys.prefix, "lib", "python*", "site-packages",
                                   "nvidia", "cu*", "bin", name))
    if not found:
        pytest.fail(f"{name} is missing: scripts/setup.sh installs it from "
                    "scripts/requirements-test.txt")
    return found[0]


def sass_by_function(artifact, arch):
    """{entry name: SASS text} of the artifact's cubin for `arch`."""
    info = json.loads(kiln("inspect", artifact, "--json").stdout)
    section = next(s for s in info["sections"] if s["name"] == f"cubin.{arch}")
    with open(artifact, "rb") as f:
        f.seek(section["offset"])
        cubin = f.read(section["size"])
    path = f"{artifact}.{arch}.cubin"
    with open(path, "wb") as f:
        f.write(cubin)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(cuda_tool("nvdisasm")) + os.pathsep + env["PATH"]
    text = subprocess.run([cuda_tool("cuobjdump"), "-sass", path], env=env,
                          check=True, capture_output=True, text=True).stdout
    parts = re.split(r"^\s*Function : (\S+)\s*$", text, flags=re.M)
    return info, {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def count(sass, opcode):
    return len(re.findall(rf"\b{re.escape(opcode)}\b", sass))


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("fixture", ["mlp", "attention"])
def test_sass_of_every_strategy(fixture, arch, tmp_path):
    artifact = str(tmp_path / "model.kiln")
    kiln("compile", os.path.join(ROOT, "test", "fixtures", fixture, "model.onnx"),
         "--target", "cuda:sm_80,sm_90a", "-o", artifact)
    info, sass = sass_by_function(artifact, arch)
    seen = set()
    for kernel in info["kernels"]:
        code, config = sass[kernel["symbol"]], kernel["config"]
        strategy = kernel["strategy"]
        seen.add(strategy)
        if strategy == "gemm-simt":
            # A and B tiles staged in shared memory between two barriers
            # per k step; every register of the block multiplies and adds
            # per k (FMUL + FADD today: the IR's mulf/addf are not marked
            # contractable, so ptxas may not fuse them into FFMA).
            rows, cols = config["register_block"]
            assert count(code, "BAR.SYNC.DEFER_BLOCKING") >= 2, kernel["name"]
            assert count(code, "STS") >= 1 and count(code, "LDS") >= 1, kernel["name"]
            multiplies = count(code, "FFMA") + count(code, "FMUL")
            assert multiplies >= rows * cols, kernel["name"]
        elif strategy == "row-reduce":
            # log2(warp) xor shuffles.
            steps = int(math.log2(config["warp"]))
            assert count(code, "SHFL.BFLY") == steps, kernel["name"]
        elif strategy == "elementwise":
            # With vector_width 4 of f32: 128-bit loads and stores.
            assert config["vector_width"] == 4
            assert count(code, "STG.E.128") == 1, kernel["name"]
            assert count(code, "LDG.E.128") >= 1, kernel["name"]
        elif strategy == "row-fused":
            # A softmax's max and sum: a butterfly of log2(32) shuffles each.
            assert count(code, "SHFL.BFLY") == 10, kernel["name"]
        elif strategy == "gemm-small-m":
            # 128-bit loads of the activation rows and the weights, and a
            # butterfly of log2(32) xor shuffles per partial sum.
            assert count(code, "LDG.E.128") >= 2, kernel["name"]
            assert count(code, "SHFL.BFLY") >= 5, kernel["name"]
        assert count(code, "STL") == 0, f"{kernel['name']} spills"
    # Together the fixtures hold every strategy these checks know: the MLP
    # (8 rows: two small-M GEMMs, bias + ReLU fused; softmax as one row-fused
    # kernel) and the attention block (128-row GEMMs on SIMT at fp32,
    # elementwise chains, its softmax row-fused).
    expected = {"mlp": {"gemm-small-m", "row-fused"},
                "attention": {"gemm-simt", "row-fused", "elementwise"}}
    assert expected[fixture] <= seen, sorted(seen)


def attention23(path):
    """An opset-23 Attention node: grouped-query heads, causal."""
    shapes = {"q": [1, 4, 8, 16], "k": [1, 2, 8, 16], "v": [1, 2, 8, 16]}
    graph = helper.make_graph(
        [helper.make_node("Attention", ["q", "k", "v"], ["y"], is_causal=1)],
        "attention23",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
         for n, s in shapes.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 16])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    onnx.save(model, path)
    rng = np.random.default_rng(0)
    return {n: rng.standard_normal(s, dtype=np.float32) for n, s in shapes.items()}


def softmax_axis1(path):
    """A softmax over a middle axis: row reductions with elementwise steps,
    each a kernel (row-fused takes last-axis softmaxes only)."""
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=1)], "softmax_axis1",
        [helper.make_tensor_value_info("x", f, [2, 8, 16])],
        [helper.make_tensor_value_info("y", f, [2, 8, 16])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              path)
    return {"x": np.random.default_rng(1).standard_normal((2, 8, 16),
                                                          dtype=np.float32)}


# Models whose kernels, together, take every configuration GPU selection
# chooses (kiln-select-strategies on cuda): gemm-simt, gemm-small-m,
# row-fused (the MLP's softmax), row-reduce with and without an
# elementwise part, elementwise, generic, and attention-fallback with its
# parts.
SELECTION_MODELS = {
    "mlp": lambda p: (os.path.join(ROOT, "test", "fixtures", "mlp", "model.onnx"),
                      {"x": np.load(os.path.join(ROOT, "test", "fixtures", "mlp",
                                                 "x.npy"))}),
    "attention23": lambda p: (p, attention23(p)),
    "softmax_axis1": lambda p: (p, softmax_axis1(p)),
}


@needs_ptxas
def test_every_selected_configuration_runs_under_the_simulator(tmp_path):
    configs = set()
    for name, make in SELECTION_MODELS.items():
        path, inputs = make(str(tmp_path / f"{name}.onnx"))
        (tmp_path / name).mkdir()
        assert_matches(path, inputs, tmp_path / name, target="cuda:sm_80,sm_90a",
                       device="sim")
        artifact = str(tmp_path / f"{name}.kiln")
        kiln("compile", path, "--target", "cuda:sm_80,sm_90a", "-o", artifact)
        dispatch = kiln("compile", path, "--target", "cuda:sm_80,sm_90a",
                        "--emit", "dispatch-mlir").stdout
        configs |= set(re.findall(r'strategy = "([\w-]+)"\}\}', dispatch))
        if re.search(r'config = \{elementwise = \{[^}]*\}, [^}]*strategy = "row-reduce"',
                     dispatch):
            configs.add("row-reduce+elementwise")
        for kernel in json.loads(kiln("inspect", artifact, "--json").stdout)["kernels"]:
            configs.add(kernel["strategy"])
            if "elementwise" in kernel["config"]:
                configs.add(kernel["strategy"] + "+elementwise")
    assert {"gemm-simt", "gemm-small-m", "row-fused", "row-reduce",
            "row-reduce+elementwise", "elementwise", "generic",
            "attention-fallback"} <= configs, sorted(configs)
