"""row-fused: a layer or RMS norm as one kernel on the cuda target, the row
held on chip (the cuda target keeps kiln.layer_norm whole, the kernel
decomposes it, kiln-gpu-row-fused runs all its steps in one launch).
Numerics under the simulator against onnxruntime at every row length the
selection treats differently (one warp per row, several, a partial last
slot), in f32 and f16; SASS of the shuffle butterflies without spills; the
GPT-2 fixture's five LayerNorms and two softmaxes are seven launches
(last-axis softmaxes take the strategy too); exporters' decomposed RMSNorms
are one launch each too."""
import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import (PRECISION_TOLERANCES, ROOT, TOLERANCES, kiln,
                      normwise_error, run_kiln, run_reference)
from test_gemm_epilogues import kernels_of
from test_sass import count, needs_ptxas, sass_by_function

TARGET = "cuda:sm_80,sm_90a"


def layer_norm(shape, dtype, rng, bias=True):
    d = shape[-1]
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    consts = [numpy_helper.from_array(
        (1 + 0.1 * rng.standard_normal(d)).astype(dtype), "gamma")]
    inputs = ["x", "gamma"]
    if bias:
        consts.append(numpy_helper.from_array(
            rng.standard_normal(d).astype(dtype), "beta"))
        inputs.append("beta")
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", inputs, ["y"], axis=-1,
                          epsilon=1e-5)], "ln",
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("y", elem, shape)], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def launches_of(artifact):
    info = json.loads(kiln("inspect", artifact, "--json").stdout)
    return info["entry_points"][0]["launches"]


@pytest.mark.parametrize("shape,warps", [
    ([8, 64], 1),         # two elements per thread
    ([2, 5, 768], 1),     # GPT-2's width; 10 rows over two blocks
    ([3, 1000], 1),       # the last slot exists for some threads only
    ([4, 1600], 2),       # GPT-2 XL: two warps meet in shared memory
    ([2, 4096], 4),       # LLaMA's width
])
def test_layer_norm_is_one_kernel_and_matches(shape, warps, tmp_path):
    rng = np.random.default_rng(shape[-1])
    path = tmp_path / "ln.onnx"
    onnx.save(layer_norm(shape, np.float32, rng, bias=shape[-1] != 1000),
              str(path))
    x = (3 + 2 * rng.standard_normal(shape)).astype(np.float32)
    got = run_kiln(path, {"x": x}, tmp_path, TARGET, "sim")["y"]
    want = run_reference(path, {"x": x})["y"]
    np.testing.assert_allclose(got, want, **TOLERANCES[np.dtype(np.float32)])
    artifact = str(tmp_path / "model.kiln")
    (kernel,) = kernels_of(artifact)
    assert kernel["strategy"] == "row-fused"
    assert kernel["config"]["warps_per_row"] == warps
    assert len(launches_of(artifact)) == 1


def test_f16_layer_norm_keeps_f32_statistics(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "ln16.onnx"
    onnx.save(layer_norm([6, 256], np.float16, rng), str(path))
    x = (1 + rng.standard_normal((6, 256))).astype(np.float16)
    got = run_kiln(path, {"x": x}, tmp_path, TARGET, "sim")["y"]
    want = run_reference(path, {"x": x})["y"]
    assert got.dtype == np.float16
    error = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
    assert error <= PRECISION_TOLERANCES["fp16"], error
    (kernel,) = kernels_of(str(tmp_path / "model.kiln"))
    assert kernel["strategy"] == "row-fused"


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_sass_of_row_fused_layer_norms(arch, tmp_path):
    """Two sums per row, each a butterfly of 5 shuffles; with two warps per
    row a barrier between the warps' partials; no local memory."""
    for d, warps in ((768, 1), (1600, 2)):
        path = tmp_path / f"ln{d}.onnx"
        onnx.save(layer_norm([16, d], np.float32, np.random.default_rng(0)),
                  str(path))
        artifact = str(tmp_path / f"ln{d}.kiln")
        kiln("compile", str(path), "--target", TARGET, "-o", artifact)
        _, sass = sass_by_function(artifact, arch)
        (kernel,) = kernels_of(artifact)
        code = sass[kernel["symbol"]]
        assert count(code, "SHFL.BFLY") == 10, kernel
        assert (count(code, "BAR.SYNC.DEFER_BLOCKING") >= 1) == (warps > 1), kernel
        assert count(code, "STL") == 0 and count(code, "LDL") == 0, kernel


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gpt2_layer_norms_and_softmaxes_are_one_launch_each(precision,
                                                            tmp_path):
    path = os.path.join(ROOT, "test", "fixtures", "transformers", "gpt2",
                        "model.onnx")
    artifact = str(tmp_path / "gpt2.kiln")
    kiln("compile", path, "--target", TARGET, "--precision", precision, "-o",
         artifact)
    strategy = {k["name"]: k["strategy"] for k in kernels_of(artifact)}
    launches = launches_of(artifact)
    norms = [l for l in launches if strategy[l["kernel"]] == "row-fused"]
    flash = [l for l in launches
             if strategy[l["kernel"]].startswith("flash-attention")]
    model = onnx.load(path)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("LayerNormalization") == 5 and ops.count("Softmax") == 2
    if precision == "fp32":
        # Two layers of two LayerNorms each, the final one, and each
        # layer's softmax, each one row kernel; attention is not raised.
        assert (len(norms), len(flash)) == (7, 0)
    else:
        # At bf16 each layer's softmax is raised into attention and runs
        # inside the flash kernel: one launch per layer, no softmax rows.
        assert (len(norms), len(flash)) == (5, 2)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gpt2_layer_is_seven_launches(precision, tmp_path):
    """Issue 13's goal for a GPT-2 layer at prefill: LN, QKV GEMM + bias,
    attention, out-proj GEMM (+ bias + residual), LN (+ residual), FC1 +
    bias + GELU, FC2 + bias + residual: seven launches, in that order, for
    each of the fixture's two layers (plus the embedding gather before
    them, and the final LN and the lm_head after)."""
    path = os.path.join(ROOT, "test", "fixtures", "transformers", "gpt2",
                        "model.onnx")
    artifact = str(tmp_path / "gpt2.kiln")
    kiln("compile", path, "--target", TARGET, "--precision", precision, "-o",
         artifact)
    strategy = {k["name"]: k["strategy"] for k in kernels_of(artifact)}
    order = [strategy[l["kernel"]] for l in launches_of(artifact)]
    layers = order[1:-2]
    assert len(layers) == 2 * 7, order
    gemm = ("gemm-mma-sync", "gemm-small-m", "gemm-wgmma")
    for layer in (layers[:7], layers[7:]):
        assert layer[0] == "row-fused" and layer[4] == "row-fused", order
        assert layer[2].startswith("flash-attention"), order
        assert all(layer[i] in gemm for i in (1, 3, 5, 6)), order
    assert order[-2:][0] == "row-fused" and order[-1] in gemm, order


@pytest.mark.parametrize("d", [4096, 3000])
def test_rms_norm_is_one_kernel_and_matches(d, tmp_path):
    """ONNX RMSNormalization (23) over LLaMA's width (4 warps per row) and
    over 3000 (the last slot partial), against NumPy in f64."""
    rng = np.random.default_rng(d)
    w = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("RMSNormalization", ["x", "w"], ["y"], axis=-1,
                          epsilon=1e-6)], "rms",
        [helper.make_tensor_value_info("x", f, [3, d])],
        [helper.make_tensor_value_info("y", f, [3, d])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    path = tmp_path / "rms.onnx"
    onnx.save(model, str(path))
    x = rng.standard_normal((3, d)).astype(np.float32)
    got = run_kiln(path, {"x": x}, tmp_path, TARGET, "sim")["y"]
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(got, want, **TOLERANCES[np.dtype(np.float32)])
    (kernel,) = kernels_of(str(tmp_path / "model.kiln"))
    assert kernel["strategy"] == "row-fused"
    assert kernel["config"]["warps_per_row"] == 4


@pytest.mark.parametrize("d,form", [(4096, "div"), (1000, "reciprocal")])
def test_decomposed_rms_norm_is_one_kernel_and_matches(d, form, tmp_path):
    """The RMSNorm exporters write (LLaMA's: Pow, ReduceMean, Add, Sqrt,
    then Div(1, .) or Reciprocal, Mul by x and by the weight): the sum of
    squares, the per-row step and the scaled row are one row-fused launch
    (kiln-gpu-fuse-rows), against NumPy in f64."""
    rng = np.random.default_rng(d)
    w = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
    f = TensorProto.FLOAT
    consts = [numpy_helper.from_array(w, "w"),
              numpy_helper.from_array(np.array(2.0, np.float32), "two"),
              numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
              numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    nodes = [helper.make_node("Pow", ["x", "two"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1],
                              keepdims=1),
             helper.make_node("Add", ["ms", "eps"], ["mse"]),
             helper.make_node("Sqrt", ["mse"], ["rms"])]
    if form == "div":
        nodes.append(helper.make_node("Div", ["one", "rms"], ["inv"]))
    else:
        nodes.append(helper.make_node("Reciprocal", ["rms"], ["inv"]))
    nodes += [helper.make_node("Mul", ["x", "inv"], ["xn"]),
              helper.make_node("Mul", ["w", "xn"], ["y"])]
    graph = helper.make_graph(
        nodes, "rms", [helper.make_tensor_value_info("x", f, [2, 3, d])],
        [helper.make_tensor_value_info("y", f, [2, 3, d])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "rms.onnx"
    onnx.save(model, str(path))
    x = rng.standard_normal((2, 3, d)).astype(np.float32)
    got = run_kiln(path, {"x": x}, tmp_path, TARGET, "sim")["y"]
    x64 = x.astype(np.float64)
    want = w * (x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-6))
    np.testing.assert_allclose(got, want, **TOLERANCES[np.dtype(np.float32)])
    (kernel,) = kernels_of(str(tmp_path / "model.kiln"))
    assert kernel["strategy"] == "row-fused", kernel


def test_llama_norms_are_one_launch_each(tmp_path):
    """The LLaMA fixture's five decomposed RMSNorms (two per layer and the
    final one): five row-fused launches, no row-reduce left."""
    path = os.path.join(ROOT, "test", "fixtures", "transformers", "llama",
                        "model.onnx")
    artifact = str(tmp_path / "llama.kiln")
    kiln("compile", path, "--target", TARGET, "--precision", "bf16", "-o",
         artifact)
    strategy = {k["name"]: k["strategy"] for k in kernels_of(artifact)}
    kinds = [strategy[l["kernel"]] for l in launches_of(artifact)]
    assert kinds.count("row-fused") == 5, kinds
    assert "row-reduce" not in kinds, kinds


def test_residual_add_norm_and_cast_are_one_kernel(tmp_path):
    """A pre-norm block's `h = x + y; n = LayerNorm(h)` where h also feeds
    the next residual add, at bf16 (so n is cast for the GEMM after it):
    the add, the norm and the cast are one row-fused launch that stores
    both h and n (kiln-gpu-fuse-rows), against onnxruntime."""
    rng = np.random.default_rng(11)
    d, f = 768, TensorProto.FLOAT
    w = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
    beta = rng.standard_normal(d).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["h"]),
         helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["n"],
                          axis=-1, epsilon=1e-5),
         helper.make_node("MatMul", ["n", "w"], ["m"]),
         helper.make_node("Add", ["h", "m"], ["out"])], "block",
        [helper.make_tensor_value_info("x", f, [1, 6, d]),
         helper.make_tensor_value_info("y", f, [1, 6, d])],
        [helper.make_tensor_value_info("out", f, [1, 6, d])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(gamma, "gamma"),
         numpy_helper.from_array(beta, "beta")])
    path = tmp_path / "block.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(path))
    inputs = {"x": rng.standard_normal((1, 6, d)).astype(np.float32),
              "y": rng.standard_normal((1, 6, d)).astype(np.float32)}
    got = run_kiln(path, inputs, tmp_path, TARGET, "sim", precision="bf16")["out"]
    want = run_reference(path, inputs)["out"]
    assert normwise_error(got, want) <= PRECISION_TOLERANCES["bf16"]
    artifact = str(tmp_path / "model.kiln")
    kernels = {k["name"]: k for k in kernels_of(artifact)}
    launches = launches_of(artifact)
    # The row-fused kernel reads x and y, writes h and n: nothing else runs
    # before the GEMM, whose epilogue adds h.
    assert [kernels[l["kernel"]]["strategy"] for l in launches] == [
        "row-fused", "gemm-small-m"]
    args = launches[0]["args"]
    assert args[:2] == ["input:x", "input:y"]
    assert sum(a.startswith("arena") for a in args) == 2  # h and n


@pytest.mark.parametrize("norm,d", [("LayerNormalization", 768),
                                    ("LayerNormalization", 1600)])
def test_a_norm_over_symbolic_rows_is_one_kernel(norm, d, tmp_path):
    """Rows of symbolic count (batch x sequence of a dynamic export or a
    checkpoint's prefill): still one row-fused launch, the grid computed
    from the sizes per run; one artifact runs every shape in the bounds
    against onnxruntime, a single row and a partial last block included."""
    rng = np.random.default_rng(d)
    consts = [numpy_helper.from_array(
        (1 + 0.1 * rng.standard_normal(d)).astype(np.float32), "gamma")]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(norm, ["x", "gamma"], ["y"], axis=-1, epsilon=1e-5)],
        "norm", [helper.make_tensor_value_info("x", f, ["batch", "seq", d])],
        [helper.make_tensor_value_info("y", f, ["batch", "seq", d])], consts)
    path = tmp_path / "norm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]),
              str(path))
    artifact = str(tmp_path / "norm.kiln")
    kiln("compile", str(path), "-o", artifact, "--target", TARGET,
         "--embed-kernel-ir", "--dim", "batch=1..3", "--dim", "seq=1..40")
    (kernel,) = kernels_of(artifact)
    assert kernel["strategy"] == "row-fused", kernel
    assert len(launches_of(artifact)) == 1
    for batch, seq in [(1, 1), (3, 37), (2, 8)]:
        x = (3 + 2 * rng.standard_normal((batch, seq, d))).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        kiln("run", artifact, "--device", "sim", "--output-dir",
             str(tmp_path / "out"), "--input", f"x=@{tmp_path / 'x.npy'}")
        got = np.load(tmp_path / "out" / "y.npy")
        want = run_reference(path, {"x": x})["y"]
        np.testing.assert_allclose(got, want, err_msg=f"{batch}x{seq}",
                                   **TOLERANCES[np.dtype(np.float32)])
