"""Fused GEMM epilogues on the cuda target: a MatMul's bias, activation
(GELU in its erf and tanh forms, SiLU, ReLU), scaling, residual add and
output cast run in the tensor-core GEMM's registers before the store
(kiln-gpu-fuse-epilogues puts them in the GEMM's dispatch, gemm-mma-sync
applies them). A GPT-2 style MLP, x@W1+b1 -> act -> @W2+b2 -> +x, is two
GEMM kernels and the cast of x; under the simulator it matches
onnxruntime's f32 result within the bf16/fp16 tolerance (conftest.py)."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import (PRECISION_TOLERANCES, kiln, normwise_error, run_kiln,
                      run_reference)
from test_sass import count, needs_ptxas, sass_by_function

TARGET = "cuda:sm_80,sm_90a"


def activation(kind, x, nodes, consts):
    """Appends the nodes of activation `kind` on tensor `x`; returns the
    name of its result (the decomposed forms exporters write)."""
    def const(name, value):
        consts.append(numpy_helper.from_array(np.array(value, np.float32), name))
        return name

    def node(op, inputs, output):
        nodes.append(helper.make_node(op, inputs, [output]))
        return output

    if kind == "gelu_erf":  # x * 0.5 * (1 + erf(x / sqrt 2))
        e = node("Erf", [node("Div", [x, const("sqrt2", 2 ** 0.5)], "g0")], "g1")
        half = node("Mul", [x, const("half", 0.5)], "g2")
        return node("Mul", [half, node("Add", [e, const("one", 1.0)], "g3")], "act")
    if kind == "gelu_tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = node("Pow", [x, const("three", 3.0)], "t0")
        inner = node("Add", [x, node("Mul", [cube, const("c", 0.044715)], "t1")], "t2")
        t = node("Tanh", [node("Mul", [inner, const("s", (2 / np.pi) ** 0.5)], "t3")], "t4")
        half = node("Mul", [x, const("half", 0.5)], "t5")
        return node("Mul", [half, node("Add", [t, const("one", 1.0)], "t6")], "act")
    if kind == "silu":
        return node("Mul", [x, node("Sigmoid", [x], "s0")], "act")
    if kind == "relu":
        return node("Relu", [x], "act")
    if kind == "scale":
        return node("Mul", [x, const("scale", 0.125)], "act")
    raise ValueError(kind)


def mlp(kind, m, k, hidden, rng):
    """x[m, k] @ W1 + b1 -> act -> @ W2 + b2 -> + x."""
    nodes, consts = [], []
    w1 = (rng.standard_normal((k, hidden)) / np.sqrt(k)).astype(np.float32)
    w2 = (rng.standard_normal((hidden, k)) / np.sqrt(hidden)).astype(np.float32)
    for name, value in (("w1", w1), ("w2", w2),
                        ("b1", rng.standard_normal(hidden).astype(np.float32)),
                        ("b2", rng.standard_normal(k).astype(np.float32))):
        consts.append(numpy_helper.from_array(value, name))
    nodes.append(helper.make_node("MatMul", ["x", "w1"], ["h0"]))
    nodes.append(helper.make_node("Add", ["h0", "b1"], ["h1"]))
    act = activation(kind, "h1", nodes, consts)
    nodes.append(helper.make_node("MatMul", [act, "w2"], ["o0"]))
    nodes.append(helper.make_node("Add", ["o0", "b2"], ["o1"]))
    nodes.append(helper.make_node("Add", ["o1", "x"], ["y"]))
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, f"mlp_{kind}", [helper.make_tensor_value_info("x", f, [m, k])],
        [helper.make_tensor_value_info("y", f, [m, k])], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def kernels_of(artifact):
    return json.loads(kiln("inspect", artifact, "--json").stdout)["kernels"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("kind,m,k,hidden", [
    ("gelu_erf", 48, 64, 128),
    ("gelu_tanh", 40, 64, 96),
    ("silu", 48, 64, 128),
    ("relu", 48, 64, 128),
    ("scale", 48, 64, 128),
    # hidden = 75: W1's rows are not 16-byte chunks (stored [N, K]) and N is
    # odd, so the epilogue stages the tile in shared memory and stores rows
    # one element per lane, guarded at the edge.
    ("gelu_erf", 33, 64, 75),
    # Few rows, long K: the second GEMM (24x128, K = 2048) splits K 6 ways;
    # its bias and residual run in the launch that adds the splits up.
    ("gelu_tanh", 24, 128, 2048),
])
def test_mlp_is_two_gemm_kernels_and_matches(kind, m, k, hidden, precision,
                                             tmp_path):
    if precision == "fp16" and kind not in ("gelu_erf", "silu"):
        pytest.skip("one precision of each activation is enough")
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp(kind, m, k, hidden, np.random.default_rng(hidden)), str(path))
    x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
    got = run_kiln(path, {"x": x}, tmp_path, TARGET, "sim", precision)["y"]
    want = run_reference(path, {"x": x})["y"]
    error = normwise_error(got, want)
    assert error <= PRECISION_TOLERANCES[precision], f"normwise error {error:.3e}"
    # The two GEMMs carry bias, activation, cast, bias and residual; the
    # only other kernel narrows x for the first GEMM. With hidden = 75 the
    # second GEMM's A rows are not 16-byte chunks: it runs gemm-simt, whose
    # bias and residual stay a kernel of their own.
    kernels = kernels_of(str(tmp_path / "model.kiln"))
    strategies = sorted(k["strategy"] for k in kernels)
    splits = [k["config"].get("split_k") for k in kernels
              if k["strategy"] == "gemm-mma-sync"]
    if hidden >= 2048:
        # The split GEMM is its launch and its combine's.
        assert strategies == ["elementwise"] + ["gemm-mma-sync"] * 3, strategies
        assert splits == [None, 6, 6], splits
    elif hidden % 8 == 0:
        assert strategies == ["elementwise", "gemm-mma-sync", "gemm-mma-sync"], strategies
    else:
        assert strategies == ["elementwise", "elementwise", "gemm-mma-sync",
                              "gemm-simt"], strategies


def test_a_product_with_two_users_keeps_its_own_kernel(tmp_path):
    """y = x@W and z = relu(x@W) + 1: the product is an output, so the ReLU
    cannot replace it in registers and stays a kernel of its own."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]),
         helper.make_node("Relu", ["y"], ["z"])], "two_users",
        [helper.make_tensor_value_info("x", f, [48, 64])],
        [helper.make_tensor_value_info("y", f, [48, 64]),
         helper.make_tensor_value_info("z", f, [48, 64])],
        [numpy_helper.from_array(w, "w")])
    path = tmp_path / "two_users.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(path))
    x = rng.standard_normal((48, 64)).astype(np.float32)
    got = run_kiln(path, {"x": x}, tmp_path, TARGET, "sim", "bf16")
    want = run_reference(path, {"x": x})
    for name in ("y", "z"):
        error = normwise_error(got[name], want[name])
        assert error <= PRECISION_TOLERANCES["bf16"], f"{name}: {error:.3e}"
    strategies = [k["strategy"] for k in kernels_of(str(tmp_path / "model.kiln"))]
    assert strategies.count("gemm-mma-sync") == 1
    assert len(strategies) >= 3, strategies


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_sass_of_fused_epilogues_has_no_spills(arch, tmp_path):
    """GPT-2's MLP at 4096 tokens: 128x128 tiles (128 f32 accumulators per
    thread) with the GELU polynomial and the residual in the epilogue still
    fit the registers: no local memory, at most 255 registers."""
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp("gelu_tanh", 4096, 768, 3072, np.random.default_rng(0)),
              str(path))
    artifact = str(tmp_path / "mlp.kiln")
    kiln("compile", str(path), "--target", TARGET, "--precision", "bf16",
         "-o", artifact)
    _, sass = sass_by_function(artifact, arch)
    gemms = [k for k in kernels_of(artifact) if k["strategy"] == "gemm-mma-sync"]
    assert len(gemms) == 2
    for kernel in gemms:
        assert kernel["config"]["tile"][:2] == [128, 128]
        code = sass[kernel["symbol"]]
        assert count(code, "HMMA.16816.F32.BF16") >= 1
        assert count(code, "STL") == 0 and count(code, "LDL") == 0, kernel["symbol"]
