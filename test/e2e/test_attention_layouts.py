"""The data movement around attention costs no kernels on the GPU: the
split of a fused QKV projection into heads (Split, Reshape, Transpose) is
read in place by the flash kernel, the merge of the heads after it
(Transpose, Reshape) is written in place, and the projection is stored in
the operand type. An attention block (QKV GEMM + bias, attention, output
projection, after a LayerNorm) is four kernels, and matches a float64 NumPy reference under
the simulator; a GPT-2 layer at prefill is seven (issue 13's budget)."""
import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import PRECISION_TOLERANCES, ROOT, kiln, normwise_error
from test_sass import needs_ptxas

TARGET = "cuda:sm_80,sm_90a"
FLASH = "flash-attention-mma-sync"

# name: (batch, sequence, query heads, kv heads, head, causal)
BLOCKS = {
    "mha_d64_causal": (2, 40, 4, 4, 64, True),
    "gqa3_d64": (1, 33, 6, 2, 64, False),
    "mha_d128_causal": (1, 24, 2, 2, 128, True),
}
WIDTH = 64


def attention_block(name, path, skew=0):
    """x [B, S, 64] -> LayerNorm -> QKV MatMul + bias -> Split -> Reshape, Transpose per
    head -> Attention-23 -> Transpose, Reshape -> output MatMul; returns
    the input and a float64 reference."""
    b, s, hq, hkv, d, causal = BLOCKS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    sizes = [hq * d, hkv * d, hkv * d]
    # `skew` extra leading columns of the projection, sliced off before the
    # split: q, k and v then start off the 16-byte chunks.
    w = (rng.standard_normal((WIDTH, skew + sum(sizes))) / 8).astype(np.float32)
    bias = (rng.standard_normal(skew + sum(sizes)) / 4).astype(np.float32)
    wo = (rng.standard_normal((hq * d, WIDTH)) / 16).astype(np.float32)
    x = rng.standard_normal((b, s, WIDTH), dtype=np.float32)
    f = TensorProto.FLOAT
    init = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b"),
            numpy_helper.from_array(wo, "wo"),
            numpy_helper.from_array(np.array(sizes, np.int64), "sizes"),
            numpy_helper.from_array(np.array([b, s, hq, d], np.int64), "qs"),
            numpy_helper.from_array(np.array([b, s, hkv, d], np.int64), "kvs"),
            numpy_helper.from_array(np.array([b, s, hq * d], np.int64), "os")]
    init += [numpy_helper.from_array(np.ones(WIDTH, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(WIDTH, np.float32), "beta")]
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"],
                              ["xn"], axis=-1, epsilon=1e-5),
             helper.make_node("MatMul", ["xn", "w"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], ["qkv_all"]),
             helper.make_node("Slice", ["qkv_all", "skew", "end", "axis"],
                              ["qkv"]),
             helper.make_node("Split", ["qkv", "sizes"], ["q0", "k0", "v0"],
                              axis=2)]
    init += [numpy_helper.from_array(np.array([skew], np.int64), "skew"),
             numpy_helper.from_array(np.array([skew + sum(sizes)], np.int64),
                                     "end"),
             numpy_helper.from_array(np.array([2], np.int64), "axis")]
    for n, shape in (("q", "qs"), ("k", "kvs"), ("v", "kvs")):
        nodes += [helper.make_node("Reshape", [n + "0", shape], [n + "1"]),
                  helper.make_node("Transpose", [n + "1"], [n],
                                   perm=[0, 2, 1, 3])]
    nodes += [helper.make_node("Attention", ["q", "k", "v"], ["a"],
                               is_causal=int(causal)),
              helper.make_node("Transpose", ["a"], ["a1"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["a1", "os"], ["a2"]),
              helper.make_node("MatMul", ["a2", "wo"], ["y"])]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", f, [b, s, WIDTH])],
        [helper.make_tensor_value_info("y", f, [b, s, WIDTH])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    onnx.save(model, path)

    x64 = x.astype(np.float64)
    xn = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(
        x64.var(-1, keepdims=True) + 1e-5)
    qkv = (xn @ w + bias)[..., skew:]
    q, k, v = np.split(qkv, np.cumsum(sizes)[:2], axis=2)
    q = q.reshape(b, s, hq, d).transpose(0, 2, 1, 3)
    k = np.repeat(k.reshape(b, s, hkv, d).transpose(0, 2, 1, 3), hq // hkv, 1)
    v = np.repeat(v.reshape(b, s, hkv, d).transpose(0, 2, 1, 3), hq // hkv, 1)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
    if causal:
        scores = np.where(np.tril(np.ones((s, s), bool)), scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    a = (p / p.sum(-1, keepdims=True)) @ v
    want = a.transpose(0, 2, 1, 3).reshape(b, s, hq * d) @ wo
    return x, want


def inspect(artifact):
    return json.loads(kiln("inspect", artifact, "--json").stdout)


@needs_ptxas
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_attention_block_is_four_kernels_and_matches(name, tmp_path):
    path = str(tmp_path / f"{name}.onnx")
    x, want = attention_block(name, path)
    np.save(tmp_path / "x.npy", x)
    for precision in (["bf16", "fp16"] if name == "mha_d64_causal"
                      else ["bf16"]):
        artifact = str(tmp_path / f"{name}.{precision}.kiln")
        kiln("compile", path, "--target", TARGET, "--precision", precision,
             "--embed-kernel-ir", "-o", artifact)
        info = inspect(artifact)
        strategy = {k["name"]: k["strategy"] for k in info["kernels"]}
        launches = info["entry_points"][0]["launches"]
        kinds = [strategy[l["kernel"]] for l in launches]
        # LayerNorm (its output cast to the operand type), QKV GEMM with
        # its bias, attention, output projection.
        assert len(kinds) == 4 and kinds[0] == "row-fused", kinds
        assert kinds[2] == FLASH, kinds
        assert kinds[1].startswith("gemm") and kinds[3].startswith("gemm")
        # The flash kernel reads the projection (one buffer) and writes
        # the merged heads the output projection reads.
        flash = launches[2]
        assert len(flash["args"]) == 2, flash
        assert flash["args"][0] in launches[1]["args"], (launches[1], flash)
        assert flash["args"][1] in launches[3]["args"], (flash, launches[3])
        out = tmp_path / f"out_{precision}"
        kiln("run", artifact, "--device", "sim", "--input",
             f"x=@{tmp_path / 'x.npy'}", "--output-dir", str(out))
        error = normwise_error(np.load(out / "y.npy"), want)
        assert error <= PRECISION_TOLERANCES[precision], (precision, error)


@needs_ptxas
def test_unaligned_heads_are_copied_not_read_in_place(tmp_path):
    """q, k and v starting 4 elements off the 16-byte chunks cp.async
    copies: the flash kernel cannot read them in place, so the head split
    stays as steps of the attention kernel (more launches, same numbers)."""
    path = str(tmp_path / "skew.onnx")
    x, want = attention_block("mha_d64_causal", path, skew=4)
    np.save(tmp_path / "x.npy", x)
    artifact = str(tmp_path / "skew.kiln")
    kiln("compile", path, "--target", TARGET, "--precision", "bf16",
         "--embed-kernel-ir", "-o", artifact)
    info = inspect(artifact)
    strategy = {k["name"]: k["strategy"] for k in info["kernels"]}
    kinds = [strategy[l["kernel"]] for l in info["entry_points"][0]["launches"]]
    assert kinds.count(FLASH) == 1 and len(kinds) > 4, kinds
    out = tmp_path / "out"
    kiln("run", artifact, "--device", "sim", "--input",
         f"x=@{tmp_path / 'x.npy'}", "--output-dir", str(out))
    error = normwise_error(np.load(out / "y.npy"), want)
    assert error <= PRECISION_TOLERANCES["bf16"], error


@needs_ptxas
def test_gpt2_layer_is_seven_kernels(tmp_path):
    """LN, QKV GEMM + bias, attention, output projection, residual + LN,
    FC1 + bias + GELU, FC2 + bias (its residual goes into the next LN)."""
    path = os.path.join(ROOT, "test", "fixtures", "transformers", "gpt2",
                        "model.onnx")
    artifact = str(tmp_path / "gpt2.kiln")
    kiln("compile", path, "--target", TARGET, "--precision", "bf16", "-o",
         artifact)
    info = inspect(artifact)
    strategy = {k["name"]: k["strategy"] for k in info["kernels"]}
    kinds = [strategy[l["kernel"]] for l in info["entry_points"][0]["launches"]]
    # The embedding gather first; the final LN and the LM head last.
    layers = kinds[1:-2]
    assert kinds[-2] == "row-fused" and kinds[-1].startswith("gemm"), kinds
    assert len(layers) == 2 * 7, kinds
    for layer in (layers[:7], layers[7:]):
        shape = ["row-fused", "gemm", FLASH, "gemm", "row-fused", "gemm",
                 "gemm"]
        assert [k if k in ("row-fused", FLASH) else k.split("-")[0]
                for k in layer] == shape, layer
