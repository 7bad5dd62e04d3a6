"""gemm-small-m: GEMMs with at most 16 rows (decoding a token, or a few)
on the cuda target. The weights are stored [N, K] at compile time
(kiln-transpose-unaligned-weights), each warp streams its columns' rows of
B in 16-byte chunks, sums across its lanes with a shuffle butterfly and
stores through the fused epilogue. Every case runs under the simulator
against onnxruntime's f32 result, at fp32 (the f32 tolerance) and at
bf16/fp16 (PRECISION_TOLERANCES in conftest.py); the SASS has the 128-bit
loads and no spills; `kiln profile` shows the weight stream coalesced."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import (PRECISION_TOLERANCES, kiln, normwise_error, run_kiln,
                      run_reference)
from test_gemm_epilogues import activation, kernels_of
from test_profile import profile
from test_sass import count, needs_ptxas, sass_by_function

TARGET = "cuda:sm_80,sm_90a"
# fp32 sums the same products in another order than onnxruntime does.
TOLERANCE = dict(PRECISION_TOLERANCES, fp32=1e-5)


def linear(x_shape, k, n, act, rng):
    """x @ W + b -> act: the projection of a decoder layer at decode time."""
    nodes, consts = [], []
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    consts += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    nodes.append(helper.make_node("MatMul", ["x", "w"], ["h0"]))
    nodes.append(helper.make_node("Add", ["h0", "b"], ["h1"]))
    out = activation(act, "h1", nodes, consts) if act else "h1"
    nodes.append(helper.make_node("Identity", [out], ["y"]))
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", f, x_shape)],
        [helper.make_tensor_value_info("y", f, [*x_shape[:-1], n])], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def check(model, inputs, tmp_path, precision):
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    got = run_kiln(path, inputs, tmp_path, TARGET, "sim", precision)["y"]
    want = run_reference(path, inputs)["y"]
    assert got.shape == want.shape and got.dtype == want.dtype
    error = normwise_error(got, want)
    assert error <= TOLERANCE[precision], f"normwise error {error:.3e}"
    return kernels_of(str(tmp_path / "model.kiln"))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("x_shape,act", [
    ([1, 256], "gelu_erf"),
    ([4, 256], "silu"),
    ([16, 256], "gelu_tanh"),
    # Rows from two loops (batch 2 x 3 tokens), linearized into M = 6.
    ([2, 3, 256], None),
])
def test_small_m_projection_with_epilogue(x_shape, act, precision, tmp_path):
    # N = 203: not a multiple of any block's columns, so the last block's
    # warps guard their columns.
    rng = np.random.default_rng(len(x_shape) * 100 + x_shape[0])
    model = linear(x_shape, 256, 203, act, rng)
    x = rng.standard_normal(x_shape).astype(np.float32)
    kernels = check(model, {"x": x}, tmp_path, precision)
    gemms = [k for k in kernels if k["strategy"].startswith("gemm")]
    assert [k["strategy"] for k in gemms] == ["gemm-small-m"], kernels
    # Bias and activation are in the GEMM's store: at fp32 it is the only
    # kernel; at bf16/fp16 one more narrows x.
    assert len(kernels) == (1 if precision == "fp32" else 2), kernels
    rows = int(np.prod(x_shape[:-1]))
    assert gemms[0]["config"] == {"columns": 2 if rows <= 4 else 1, "warps": 4}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batched_scores_of_one_query_read_keys_in_place(precision, tmp_path):
    """q @ k^T for one query token per head (attention scores at decode):
    a batch of 8 heads, both operands K-innermost as they are in memory,
    M = 1, N = 37 keys."""
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
         helper.make_node("MatMul", ["q", "kt"], ["y"])], "scores",
        [helper.make_tensor_value_info("q", f, [2, 4, 1, 64]),
         helper.make_tensor_value_info("k", f, [2, 4, 37, 64])],
        [helper.make_tensor_value_info("y", f, [2, 4, 1, 37])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(7)
    inputs = {"q": rng.standard_normal((2, 4, 1, 64)).astype(np.float32),
              "k": rng.standard_normal((2, 4, 37, 64)).astype(np.float32)}
    kernels = check(model, inputs, tmp_path, precision)
    assert "gemm-small-m" in [k["strategy"] for k in kernels], kernels


@pytest.mark.parametrize("k,rows,expected", [
    # K = 100 is not a whole number of 16-byte bf16 chunks.
    (100, 1, "not small-m"),
    # 17 rows are more than the strategy keeps in registers.
    (256, 17, "not small-m"),
])
def test_shapes_outside_the_strategy_take_another_and_match(k, rows, expected,
                                                           tmp_path):
    rng = np.random.default_rng(k + rows)
    model = linear([rows, k], k, 64, "relu", rng)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    kernels = check(model, {"x": x}, tmp_path, "bf16")
    assert "gemm-small-m" not in [kk["strategy"] for kk in kernels], kernels


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_sass_streams_with_128_bit_loads_and_no_spills(arch, tmp_path):
    """GPT-2's QKV projection for one token (768 -> 2304) and a 16-token
    one, bf16 with the bias fused."""
    for rows in (1, 16):
        path = tmp_path / f"qkv{rows}.onnx"
        onnx.save(linear([rows, 768], 768, 2304, None, np.random.default_rng(0)),
                  str(path))
        artifact = str(tmp_path / f"qkv{rows}.kiln")
        kiln("compile", str(path), "--target", TARGET, "--precision", "bf16",
             "-o", artifact)
        _, sass = sass_by_function(artifact, arch)
        (gemm,) = [k for k in kernels_of(artifact) if k["strategy"] == "gemm-small-m"]
        code = sass[gemm["symbol"]]
        # One 16-byte load of each column's weights and of each row of x
        # per step, and log2(32) shuffles per output.
        assert count(code, "LDG.E.128") >= 1 + rows, gemm
        assert count(code, "SHFL.BFLY") >= 5 * rows, gemm
        assert count(code, "STL") == 0 and count(code, "LDL") == 0, gemm


@needs_ptxas
def test_profile_shows_the_weight_stream_coalesced(tmp_path):
    """The model's counters (not a measurement) for one token through
    GPT-2's QKV projection (bf16): the loads are whole 32-byte sectors (the
    only partial sectors are the 2304 single-element stores of the result);
    the weights are moved once, and x once per warp, which streams
    `columns` weight rows: moved <= unique x (1 + 1 / columns)."""
    path = tmp_path / "qkv.onnx"
    onnx.save(linear([1, 768], 768, 2304, None, np.random.default_rng(0)), str(path))
    artifact = str(tmp_path / "qkv.kiln")
    kiln("compile", str(path), "--target", TARGET, "--precision", "bf16",
         "--embed-kernel-ir", "-o", artifact)
    out, rows = profile(artifact, "--gpu", "h100", "--sample-blocks", "0")
    (gemm,) = [k for k in kernels_of(artifact) if k["strategy"] == "gemm-small-m"]
    row = rows[gemm["name"]]
    assert float(row["coal"]) <= 1.03, out
    # 768 x 2304 bf16 weights: 3.54 MB of the unique bytes.
    assert float(row["unique MB"]) >= 3.5, out
    columns = gemm["config"]["columns"]
    assert float(row["moved MB"]) <= 1.03 * (1 + 1 / columns) * float(row["unique MB"]), out
    assert row["limit"] == "DRAM", out
